"""Runs trained side by side: the same bytes as one after the other, failures as the run itself
raises them, and children that never outlive their stage."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rewind import RewindError
from stages.shared.parallel import WORKERS_ENV, Run, run_all, worker_count
from tests.conftest import alive, children_of, copy_of, make_project, project_env, run, tiny_params

CPU = "cpu"


def test_worker_count_fills_the_cores_at_the_threads_each_run_takes(monkeypatch):
    monkeypatch.delenv(WORKERS_ENV, raising=False)
    cores = len(os.sched_getaffinity(0))
    assert worker_count(1, CPU, runs=100) == cores + 1, "single-threaded runs: one more than the cores"
    assert worker_count(1, CPU, runs=1) == 1, "never more workers than runs"
    assert worker_count(None, CPU, runs=100) == 1, "a run on every core leaves none free"
    assert worker_count(cores + 1, CPU, runs=100) == 1
    assert worker_count(2, CPU, runs=100) == max(1, cores // 2)
    assert worker_count(1, "cuda", runs=100) == 1, "a forked child cannot use CUDA"
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert worker_count(None, CPU, runs=100) == 3
    assert worker_count(1, "cuda", runs=100) == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(WORKERS_ENV, bad)
        with pytest.raises(RewindError, match=f"^{WORKERS_ENV}: '{bad}' is not a worker count"):
            worker_count(1, CPU, runs=4)


def test_each_run_trains_in_a_child_then_the_stage_only_loads_it(tmp_path):
    """A run's `train` is called twice: first in a child (which trains), then in the stage, which
    here finds the child's file; results come in order, seconds from the children."""

    def train(index: int):
        def call() -> tuple[int, int, str | None]:
            done = tmp_path / f"run-{index}"
            before = done.read_text() if done.exists() else None
            if before is None:
                time.sleep(0.2)
                done.write_text(str(os.getpid()))
            return index, os.getpid(), before

        return Run(f"run {index}", call)

    started = time.perf_counter()
    results, seconds = run_all([train(i) for i in range(4)], workers=2)
    wall = time.perf_counter() - started
    assert [index for index, _, _ in results] == [0, 1, 2, 3]
    trainers = {before for _, _, before in results}
    assert None not in trainers and str(os.getpid()) not in trainers, "every run trained in a child"
    assert {pid for _, pid, _ in results} == {os.getpid()}, "the stage itself gets the results"
    assert seconds >= 4 * 0.2, "training seconds are summed over runs"
    assert wall < 4 * 0.2, "two at a time"


def test_a_failing_run_is_raised_as_itself_and_as_one_after_the_other_would_meet_it(tmp_path):
    """The runs after a failed one are stopped; of two failures, the earlier run's is raised (one
    run after the other would have stopped there), even when the later run fails first."""

    def slow() -> None:
        time.sleep(30)

    def diverging(seed: int, after: float) -> Callable[[], None]:
        def train() -> None:
            time.sleep(after)
            raise RewindError(f"lrr round 0 seed {seed}: training diverged: loss is nan")

        return train

    def buggy() -> None:
        raise ValueError("a bug")

    started = time.perf_counter()
    with pytest.raises(RewindError, match="^lrr round 0 seed 1: training diverged: loss is nan$"):
        run_all([Run("seed 1", diverging(1, 0)), Run("slow", slow), Run("slow too", slow)], workers=2)
    assert time.perf_counter() - started < 10, "the runs after it were stopped"
    with pytest.raises(RewindError, match="^lrr round 0 seed 0: "):
        run_all([Run("seed 0", diverging(0, 1.0)), Run("seed 1", diverging(1, 0))], workers=2)
    with pytest.raises(RuntimeError, match=r"^bug: its training process failed \(exit 1\)"):
        run_all([Run("fine", lambda: None), Run("bug", buggy)], workers=2)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The tiny project, validated and prepared, 3 seeds of 30 epochs: each test trains a copy."""
    params = tiny_params(**{"seeds": [0, 1, 2], "train.epochs": 30})
    project = make_project(tmp_path_factory.mktemp("parallel") / "p", params)
    for stage in ("validate", "prepare"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    return project


def digests(root: Path) -> dict[str, str]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def train(project: Path, workers: int, *arguments: str) -> subprocess.CompletedProcess:
    env = project_env() | {WORKERS_ENV: str(workers)}
    return subprocess.run(
        [sys.executable, "-m", *arguments], cwd=project, env=env, capture_output=True, text=True, check=True
    )


def test_side_by_side_gives_the_bytes_of_one_after_the_other(prepared, tmp_path):
    """Dense training, a retraining round and a sweep: every output file, curves included."""
    outputs = {}
    for workers in (1, 3):
        project = copy_of(prepared, tmp_path / f"workers-{workers}")
        train(project, workers, "stages.train")
        train(project, workers, "stages.prune", "--strategy", "lrr", "--round", "0")
        train(project, workers, "stages.retrain", "--strategy", "lrr", "--round", "0")
        train(project, workers, "stages.sweep", "--strategy", "lrr")
        outputs[workers] = digests(project / "runs") | digests(project / "results")
        assert not (project / ".rewind/scratch").exists() or not any((project / ".rewind/scratch").iterdir())
    assert len(outputs[1]) > 40 and outputs[3] == outputs[1]


def test_children_die_with_their_stage_and_the_rerun_resumes(prepared, tmp_path):
    """SIGKILL to the stage process alone (not its group): its training children go too, so no
    orphan keeps writing scratch or holds the stage's lock; the rerun resumes to the same bytes."""
    project, reference = copy_of(prepared, tmp_path / "killed"), copy_of(prepared, tmp_path / "reference")
    for path in (project, reference):  # runs of seconds: a child left alive would outlast the check below
        (path / "params.yaml").write_text((path / "params.yaml").read_text().replace("epochs: 30", "epochs: 120"))
    env = project_env() | {WORKERS_ENV: "2"}
    stage = subprocess.Popen(
        [sys.executable, "-m", "stages.train"], cwd=project, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while len(children := children_of(stage.pid)) < 2:
        assert stage.poll() is None and time.monotonic() < deadline, "two runs never trained at once"
        time.sleep(0.005)
    stage.send_signal(signal.SIGKILL)
    stage.wait()
    deadline = time.monotonic() + 1
    while any(alive(child) for child in children):
        assert time.monotonic() < deadline, "a training child outlived its stage"
        time.sleep(0.01)
    train(project, 2, "stages.train")
    train(reference, 1, "stages.train")
    assert digests(project / "runs/dense") == digests(reference / "runs/dense")
