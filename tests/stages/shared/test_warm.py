"""The warm stage server: stages DVC starts under it run in a forked child that has torch already,
with the same outputs as cold starts, their exit status and one-line errors, signals forwarded,
children that die with the stage process, and a cold start whenever the code changed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.project import Project
from bench.repro import lock_outs
from stages.shared.resumable import PROGRESS, scratch_dir
from tests.conftest import alive, children_of, copy_of, make_project, project_env, run, tiny_params

pytestmark = pytest.mark.slow

SERVER = [sys.executable, "-m", "stages.shared.warm_server"]
TORCH_LOADED_KIB = 150 * 1024  # a stage process that imported torch holds far more; a warm one a few MiB


def test_a_warm_repro_gives_the_bytes_of_a_cold_one_and_no_stage_process_loads_torch(tmp_path):
    cold, warm = (Project(tmp_path / side, tiny_params()) for side in ("cold", "warm"))
    cold.repro()
    warm.run([*SERVER, sys.executable, "-m", "dvc", "repro"])
    assert lock_outs(warm.path) == lock_outs(cold.path) and len(lock_outs(cold.path)) > 10
    for name in ("results/metrics.json", "results/headline.json", "reports/report.md"):
        assert (warm.path / name).read_bytes() == (cold.path / name).read_bytes(), name
    processes = warm.processes()
    assert len(processes) == len(lock_outs(cold.path))
    assert max(p.maxrss_kib for p in processes) < TORCH_LOADED_KIB, "every stage ran in the server's child"
    assert min(p.maxrss_kib for p in cold.processes()) > TORCH_LOADED_KIB


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A tiny project validated and prepared, 3 seeds of 150 epochs: seconds of dense training."""
    project = make_project(tmp_path_factory.mktemp("warm") / "p", tiny_params(**{"train.epochs": 150}))
    for stage in ("validate", "prepare"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    return project


def under_server(project: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVER, *command], cwd=project, env=project_env(), capture_output=True, text=True)


def test_a_failing_stage_gives_its_status_and_one_line(prepared, tmp_path):
    project = copy_of(prepared, tmp_path / "p")
    done = under_server(project, sys.executable, "-m", "stages.prune", "--strategy", "magic", "--round", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: params.yaml: compare: strategy 'magic' is not compared; compared: ['ft', 'wr', 'lrr']"
    )


def test_edited_code_starts_cold(prepared, tmp_path):
    """A code file touched after the server started: the stage runs in its own process (torch
    loaded there), and still works."""
    project = copy_of(prepared, tmp_path / "p")
    shim = Project(tmp_path / "shim", tiny_params())  # its `python` shim logs each stage process's memory
    script = f"touch rewind/__init__.py && {sys.executable} -m stages.validate"
    env = shim.env() | {"PATH": f"{shim.bin}:{os.environ['PATH']}"}
    subprocess.run([*SERVER, "bash", "-c", script.replace(sys.executable, "python")], cwd=project, env=env, check=True)
    (record,) = [json.loads(line) for line in shim.log.read_text().splitlines()]
    assert record["maxrss_kib"] > TORCH_LOADED_KIB


def resumable(project: Path) -> bool:
    """Seed 0 has saved progress a rerun resumes from."""
    return (project / scratch_dir("train/seed-0") / PROGRESS).exists()


def started_warm(project: Path) -> tuple[subprocess.Popen, int, int]:
    """The server running `python -m stages.train`, a few epochs in: (server, the stage process, its warm child)."""
    server = subprocess.Popen(
        [*SERVER, sys.executable, "-m", "stages.train"],
        cwd=project,
        env=project_env() | {"REWIND_WORKERS": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while len(children := children_of(server.pid)) < 2 or not resumable(project):
        assert server.poll() is None and time.monotonic() < deadline, "the stage never started warm"
        time.sleep(0.01)
    stage = next(pid for pid in children if b"stages.train" in Path(f"/proc/{pid}/cmdline").read_bytes())
    (child,) = set(children) - {stage}
    return server, stage, child


def test_a_stage_process_killed_outright_takes_its_warm_child_along_and_resumes(prepared, tmp_path):
    project, reference = copy_of(prepared, tmp_path / "p"), copy_of(prepared, tmp_path / "reference")
    server, stage, child = started_warm(project)
    os.kill(stage, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(child):
        assert time.monotonic() < deadline, "the warm child outlived the stage process"
        time.sleep(0.01)
    server.wait(timeout=30)
    rerun = under_server(project, sys.executable, "-m", "stages.train")
    assert rerun.returncode == 0 and "resuming after step" in rerun.stderr
    run([sys.executable, "-m", "stages.train"], reference)
    files = sorted(p.relative_to(project) for p in (project / "runs").rglob("*") if p.is_file())
    assert files and all((project / f).read_bytes() == (reference / f).read_bytes() for f in files)


def test_ctrl_c_reaches_the_warm_child_through_the_stage_process(prepared, tmp_path):
    project = copy_of(prepared, tmp_path / "p")
    server, stage, child = started_warm(project)
    os.kill(stage, signal.SIGINT)
    _, stderr = server.communicate(timeout=60)
    assert server.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted; training progress is kept")
    assert not alive(child)
