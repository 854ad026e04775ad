"""Throwaway copies of the project, for the benchmark and the tests alike: the code a stage runs
(stages.shared.layout.PROJECT_FILES), dvc.yaml, DVC's config and a params.yaml, committed in a new
git repo with an empty DVC cache (so no run-cache either): a clean state to run `dvc repro` or the
flow in, away from the real workspace."""

import os
import shutil
import subprocess
from pathlib import Path

import yaml

from stages.shared import layout

ROOT = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "rewind",
    "GIT_AUTHOR_EMAIL": "rewind@localhost",
    "GIT_COMMITTER_NAME": "rewind",
    "GIT_COMMITTER_EMAIL": "rewind@localhost",
}


def make_project(path: Path, params: dict | None = None, source: Path = ROOT) -> Path:
    """A git + DVC repo at `path` holding `source`'s code and `params` (default: `source`'s
    params.yaml as it is), committed."""
    path.mkdir(parents=True, exist_ok=True)
    for name in layout.PROJECT_FILES:
        origin = source / name
        if origin.is_dir():
            shutil.copytree(origin, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif origin.exists():
            shutil.copy2(origin, path / name)
    shutil.copytree(source / ".dvc", path / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    if params is None:
        shutil.copy2(source / "params.yaml", path / "params.yaml")
    else:
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        subprocess.run(command, cwd=path, env=os.environ | GIT_IDENTITY, check=True, capture_output=True)
    return path


def tiny_params(**overrides: object) -> dict:
    """The default params.yaml shrunk to seconds: 2 seeds, 4 dense epochs, 2 rounds, 3 strategies,
    a budget sweep of 2 strategies x 2 budgets at one sparsity; `overrides` by dotted key."""
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
