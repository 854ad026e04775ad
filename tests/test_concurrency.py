"""Two runs on one workspace at once either wait for each other or fail clearly; nothing is corrupted."""

import subprocess
import sys

import pytest

from rewind.checkpoint import load_tensors
from tests.conftest import dvc, make_project, project_env, tiny_params

pytestmark = pytest.mark.slow


def start(args: list[str], cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=cwd,
        env=project_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("wait", [False, True])
def test_two_repros_at_once(tmp_path, wait):
    project = make_project(tmp_path / "p", tiny_params(**{"train.epochs": 40}))
    flags = ["--wait-for-lock"] if wait else []
    runs = [start([*flags, "repro", "train"], project) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in runs]
    # DVC's repo lock (which --wait-for-lock waits on) and its per-output rwlock (which it does
    # not) make the loser fail with a message about the lock, never run a stage twice at once.
    assert 0 in [code for code, _, _ in results], results
    for code, _, err in results:
        assert code == 0 or "lock" in err.lower(), err
    dvc("repro", "train", cwd=project)  # a rerun after the loser finds nothing left to do
    assert "up to date" in dvc("status", "train", cwd=project).stdout
    for file in sorted((project / "runs/dense").rglob("*.safetensors")):
        load_tensors(file)  # verifies the content hash of every checkpoint
    assert not list(project.rglob("*.tmp"))
