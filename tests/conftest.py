"""Shared fixtures: a tiny copy of the project in a temporary git repo, run with real dvc."""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.shared import layout

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = layout.PROJECT_FILES
VENV_BIN = str(Path(sys.executable).parent)


def tiny_params(**overrides) -> dict:
    """The default params.yaml shrunk to seconds: 2 seeds, 4 dense epochs, 2 rounds, 3 strategies,
    a budget sweep of 2 strategies x 2 budgets at one sparsity."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seeds"] = [0, 1]
    params["train"].update(epochs=4, milestones=[2], batch_size=128)
    for spec in params["strategies"].values():
        spec["budget"] = min(spec["budget"], 2)
    params["strategies"]["reinit"]["budget"] = 4
    params["compare"] = ["ft", "wr", "lrr"]
    params["rounds"] = [{"id": 0, "prev": "../dense"}, {"id": 1, "prev": "round-0"}]
    params["sweep"] = {"strategies": ["ft", "lrr"], "sparsities": [0.9], "budgets": [1, 2]}
    for dotted, value in overrides.items():
        *path, last = dotted.split(".")
        node = params
        for key in path:
            node = node[key]
        node[last] = value
    return params


def params_with(tmp_path: Path, **train):
    """tiny_params with these `train` keys changed, written under `tmp_path` and validated as a stage would."""
    from stages.shared.params import load_params

    raw = tiny_params()
    raw["train"].update(train)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return load_params(tmp_path / "params.yaml")


def project_env() -> dict[str, str]:
    """The environment stage commands need: this venv's python first on PATH, telemetry off."""
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.update(
        DVC_NO_ANALYTICS="1",
        DO_NOT_TRACK="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    return env


def run(
    cmd: list[str], cwd: Path, check: bool = True, timeout: float | None = None, **popen
) -> subprocess.CompletedProcess:
    """`cmd` in `cwd` with the project's environment; a hang past `timeout` seconds fails the test."""
    result = subprocess.run(cmd, cwd=cwd, env=project_env(), capture_output=True, text=True, timeout=timeout, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, check)


def make_project(path: Path, params: dict) -> Path:
    """A git + dvc repo holding the project's code and `params`, committed."""
    path.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, path / name)
    shutil.copytree(ROOT / ".dvc", path / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "tiny project"], path)
    return path


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project", tiny_params())


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> tuple[Path, str]:
    """The tiny project after one `dvc repro`, results committed, with DVC's output of that run.
    Reproducing takes a minute here: it is built once per test run, by whichever pytest-xdist
    worker needs it first, under a lock the others wait on; tests copy it (`copy_of`)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder
    path, output = shared / "reproduced" / "project", shared / "reproduced" / "repro-output.txt"
    with open(shared / "reproduced.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not output.exists():
            make_project(path, tiny_params())
            first = dvc("repro", cwd=path)
            run(["git", "add", "-A"], path)
            run(["git", "commit", "-qm", "results"], path)
            output.write_text(first.stdout)
    return path, output.read_text()


def copy_of(project: Path, destination: Path) -> Path:
    """A copy of a project: its git repository, workspace and DVC cache (a clone would lack the cache)."""
    shutil.copytree(project, destination, symlinks=True)
    return destination
