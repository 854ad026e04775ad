"""Kill real training processes with SIGKILL at several points; the rerun must resume and end
bit-identical to a run that was never interrupted."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stages.shared.resumable import PROGRESS, scratch_dir
from tests.conftest import dvc, make_project, project_env, run, tiny_params

EPOCHS = 120


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(project: Path) -> dict[str, str]:
    files = [*sorted((project / "runs/dense").rglob("*.safetensors")), project / "runs/dense/history/seed-0.json"]
    return {str(p.relative_to(project)): digest(p) for p in files}


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=project_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(process: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    """SIGKILL the process group as soon as `ready()` is true (the process must not finish first)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before the kill point: {process.stderr.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def progress_epochs(project: Path) -> int:
    """Epochs recorded in the progress file (-1 while there is none): its checkpoints exist too."""
    scratch = project / scratch_dir("train/seed-0")
    if not (scratch / PROGRESS).exists():
        return -1
    return len(list((scratch / "checkpoints").glob("epoch-*.safetensors"))) - 2


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    """The outputs of an uninterrupted run."""
    project = fresh_copy(tmp_path_factory.mktemp("resume"))
    run([sys.executable, "-m", "stages.train"], project)
    return outputs(project)


def fresh_copy(tmp_path: Path) -> Path:
    project = make_project(tmp_path / "p", tiny_params(**{"train.epochs": EPOCHS, "seeds": [0]}))
    for stage in ("validate", "prepare"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    return project


@pytest.mark.parametrize("kill_after_epochs", [1, EPOCHS // 2, EPOCHS - 5])
def test_killed_training_resumes_bit_identically(reference, tmp_path, kill_after_epochs):
    project = fresh_copy(tmp_path)
    process = start([sys.executable, "-m", "stages.train"], project)
    kill_when(process, lambda: progress_epochs(project) >= kill_after_epochs)
    assert not (project / "runs/dense/models").exists()
    rerun = run([sys.executable, "-m", "stages.train"], project)
    assert "resuming after epoch" in rerun.stderr
    assert outputs(project) == reference
    assert not (project / scratch_dir("train/seed-0")).exists(), "scratch is cleaned up on success"


def test_kill_during_a_progress_write_is_survived(reference, tmp_path):
    """A kill mid-write leaves a temporary file and the previous progress; a torn progress file
    (as a non-atomic writer would leave) is refused and training starts afresh; both end right."""
    project = fresh_copy(tmp_path)
    process = start([sys.executable, "-m", "stages.train"], project)
    kill_when(process, lambda: progress_epochs(project) >= 10)
    progress = project / scratch_dir("train/seed-0") / PROGRESS
    (progress.parent / f".{PROGRESS}.torn.tmp").write_bytes(progress.read_bytes()[:1000])
    progress.write_bytes(progress.read_bytes()[:-100])
    rerun = run([sys.executable, "-m", "stages.train"], project)
    assert "ignoring unusable progress file" in rerun.stderr
    assert outputs(project) == reference


def test_progress_of_other_params_is_not_trusted(reference, tmp_path):
    project = fresh_copy(tmp_path)
    process = start([sys.executable, "-m", "stages.train"], project)
    kill_when(process, lambda: progress_epochs(project) >= 10)
    (project / "params.yaml").write_text(
        (project / "params.yaml").read_text().replace("momentum: 0.9", "momentum: 0.8")
    )
    rerun = run([sys.executable, "-m", "stages.train"], project)
    assert "belongs to other params or inputs" in rerun.stderr
    assert outputs(project) != reference


def test_dvc_repro_killed_mid_training_resumes_under_dvc(reference, tmp_path):
    project = fresh_copy(tmp_path)
    process = start([sys.executable, "-m", "dvc", "repro", "train"], project)
    kill_when(process, lambda: progress_epochs(project) >= EPOCHS // 3)
    result = dvc("repro", "train", cwd=project)
    assert "resuming after epoch" in result.stdout + result.stderr
    assert outputs(project) == reference
    assert "train" not in dvc("status", "train", cwd=project).stdout.split(":")[0]
