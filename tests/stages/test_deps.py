"""Every stage's deps in dvc.yaml cover the code it runs: the module its command starts, every
project module that imports (at any depth, inside functions too) and every package __init__ that
importing them executes. An edit to any of them must make DVC rerun the stage."""

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PROJECT_PACKAGES = ("rewind", "stages")


def module_file(module: str) -> Path | None:
    """The file of a project module or package, or None for anything else (torch, the stdlib)."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = ROOT / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise AssertionError(f"{module} is imported but is no project file")


def imported_modules(file: Path) -> set[str]:
    """Modules named by the import statements of `file`, with `from package import module` seen
    as importing the module when it is one."""
    names = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            candidates = {f"{node.module}.{alias.name}" for alias in node.names}
            names |= {name for name in candidates if _is_module(name)}
    return names


def _is_module(name: str) -> bool:
    try:
        return module_file(name) is not None
    except AssertionError:
        return False


def files_run_by(module: str) -> set[Path]:
    """The project files executed by `python -m <module>`: the module, its imports transitively,
    and the __init__.py of every package on the way."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            file = module_file(".".join(parts[:depth]))
            if file is not None and file not in seen:
                seen.add(file)
                pending += [m for m in imported_modules(file) if module_file(m) is not None]
    return seen


def stage_commands() -> dict[str, tuple[str, list[str]]]:
    """Each stage of dvc.yaml (templated stages once): the module its command runs, its deps."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = {}
    for name, stage in stages.items():
        words = stage["cmd"].split()
        assert words[:2] == ["python", "-m"], f"{name}: a stage command is `python -m <module> ...`"
        commands[name] = (words[2], [str(dep) for dep in stage["deps"]])
    return commands


def uncovered(module: str, deps: list[str]) -> list[str]:
    covered = [ROOT / dep for dep in deps if "${" not in dep]
    return sorted(
        str(file.relative_to(ROOT))
        for file in files_run_by(module)
        if not any(file == dep or dep in file.parents for dep in covered)
    )


@pytest.mark.parametrize("stage", list(stage_commands()))
def test_stage_deps_cover_the_code_it_runs(stage):
    module, deps = stage_commands()[stage]
    assert uncovered(module, deps) == [], f"dvc.yaml: stage {stage} runs code it does not depend on"


def test_the_check_sees_shared_code_and_package_inits():
    """The walk must follow `from stages.shared import layout` and include package __init__
    files: the dvc.yaml of before stages/shared existed (deps listed by hand) fails it."""
    files = {str(f.relative_to(ROOT)) for f in files_run_by("stages.retrain")}
    assert {"stages/__init__.py", "stages/shared/__init__.py", "stages/shared/layout.py", "rewind/train.py"} <= files
    assert uncovered("stages.retrain", ["stages/retrain.py", "stages/shared/params.py", "rewind"]) != []
