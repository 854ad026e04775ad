"""Kill real training processes with SIGKILL at many points; the rerun must resume and end with
every declared output, bit-identical to a run that was never interrupted, and DVC must tell the
truth about it in between."""

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stages.shared.parallel import WORKERS_ENV
from stages.shared.resumable import PROGRESS, scratch_dir
from tests.conftest import copy_of, dvc, make_project, project_env, run, tiny_params

SEEDS, EPOCHS = [0, 1, 2], 40
ITERATIONS = [5, 215, 437]  # steps between epochs (11 an epoch) whose weights the dense run keeps too
TRAIN = [sys.executable, "-m", "stages.train"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(project: Path) -> dict[str, str]:
    """Every file under runs/dense (rewind points, models, masks, histories, curves) by digest."""
    return {str(p.relative_to(project)): digest(p) for p in sorted((project / "runs/dense").rglob("*")) if p.is_file()}


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    """`cmd` training its seeds one after the other, so each kill point is the moment it names (runs
    trained side by side are killed and resumed in tests/stages/shared/test_parallel.py)."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=project_env() | {WORKERS_ENV: "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120.0) -> None:
    """SIGKILL the process group as soon as `ready()` is true (the process must not finish first)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before the kill point: {process.stderr.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def epochs_done(project: Path, seed: int) -> int:
    """Epochs of `seed` whose rewind point is in scratch (-1 before its first)."""
    return len(list((project / scratch_dir(f"train/seed-{seed}")).glob("epoch-*.safetensors"))) - 1


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A project with 3 seeds of 40 epochs, validated and prepared: each test trains a copy."""
    project = make_project(
        tmp_path_factory.mktemp("prepared") / "p",
        tiny_params(**{"train.epochs": EPOCHS, "seeds": SEEDS, "train.rewind_iterations": ITERATIONS}),
    )
    for stage in ("validate", "prepare"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    return project


@pytest.fixture
def fresh(prepared, tmp_path) -> Path:
    return copy_of(prepared, tmp_path / "p")


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory) -> dict[str, str]:
    """The outputs of an uninterrupted run."""
    project = copy_of(prepared, tmp_path_factory.mktemp("resume") / "p")
    run(TRAIN, project)
    files = outputs(project)
    assert sum("/step-" in name for name in files) == len(SEEDS) * len(ITERATIONS)
    for kind in ("epoch", "momentum"):
        per_epoch = [name for name in files if re.search(rf"/checkpoints/seed-\d/{kind}-\d{{3}}\.safetensors$", name)]
        assert len(per_epoch) == len(SEEDS) * (EPOCHS + 1)
    return files


KILL_POINTS = {
    "first seed, mid-run": lambda p: epochs_done(p, 0) >= EPOCHS // 3,
    "between seeds": lambda p: epochs_done(p, 1) >= 0,
    "middle seed, mid-run": lambda p: epochs_done(p, 1) >= EPOCHS // 2,
    "last seed, near its end": lambda p: epochs_done(p, 2) >= EPOCHS - 5,
    "while writing the outputs": lambda p: (p / "runs/dense/checkpoints/seed-0").exists(),
}
DIRECT = [point for point in KILL_POINTS if point != "middle seed, mid-run"]  # dvc repro -s kills it below


@pytest.mark.parametrize("point", DIRECT)
def test_killed_training_resumes_bit_identically(reference, fresh, point):
    project = fresh
    kill_when(start(TRAIN, project), lambda: KILL_POINTS[point](project))
    rerun = run(TRAIN, project)
    assert "resuming after step" in rerun.stderr
    assert outputs(project) == reference
    assert not (project / scratch_dir("train")).exists(), "scratch is cleaned up on success"


@pytest.mark.parametrize(
    ("command", "point"),
    [
        (["repro", "-s", "train"], "middle seed, mid-run"),
        (["repro", "-s", "train"], "while writing the outputs"),
        (["repro", "train"], "first seed, mid-run"),  # the whole chain up to train, as `dvc repro` runs it
    ],
)
def test_killed_dvc_repro_resumes_under_dvc_and_status_tells_the_truth(reference, fresh, command, point):
    project = fresh
    kill_when(start([sys.executable, "-m", "dvc", *command], project), lambda: KILL_POINTS[point](project))
    assert "train" in dvc("status", "train", cwd=project).stdout, "a killed stage is not up to date"
    result = dvc(*command, cwd=project)  # one rerun is enough: no stale lock, nothing lost
    assert "resuming after step" in result.stdout + result.stderr
    assert outputs(project) == reference
    assert "up to date" in dvc("status", "train", cwd=project).stdout


def test_kill_during_a_progress_write_is_survived(reference, fresh):
    """A kill mid-write leaves a temporary file and the previous progress; a torn progress file
    (as a non-atomic writer would leave) is refused and training starts afresh; both end right."""
    project = fresh
    kill_when(start(TRAIN, project), lambda: epochs_done(project, 0) >= 10)
    progress = project / scratch_dir("train/seed-0") / PROGRESS
    (progress.parent / f".{PROGRESS}.torn.tmp").write_bytes(progress.read_bytes()[:1000])
    progress.write_bytes(progress.read_bytes()[:-100])
    rerun = run(TRAIN, project)
    assert "ignoring unusable progress file" in rerun.stderr
    assert outputs(project) == reference


def test_progress_of_other_params_is_not_trusted(reference, fresh):
    project = fresh
    kill_when(start(TRAIN, project), lambda: epochs_done(project, 0) >= 10)
    (project / "params.yaml").write_text(
        (project / "params.yaml").read_text().replace("momentum: 0.9", "momentum: 0.8")
    )
    rerun = run(TRAIN, project)
    assert "belongs to other params or inputs" in rerun.stderr
    assert outputs(project) != reference


def test_a_second_run_of_a_running_stage_stops_naming_the_first(fresh):
    project = fresh
    first = start(TRAIN, project)
    try:
        kill_when_ready = time.monotonic() + 60
        while epochs_done(project, 0) < 1:
            assert time.monotonic() < kill_when_ready and first.poll() is None
            time.sleep(0.01)
        second = run(TRAIN, project, check=False)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: train: another run of this stage is in progress (pid {first.pid}); wait for it or stop it, then rerun"
    ]
