"""pipeline.warm_dvc: DVC's CLI run in forks of a warm server, polling its repository lock every 50 ms."""

import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dvc
import dvc.lock
import pytest

from pipeline import PipelineError
from pipeline.warm_dvc import POLL_SECONDS, poll_faster, warm_dvc
from tests.conftest import dvc as run_dvc
from tests.conftest import project_env, run

DVC_YAML = """\
stages:
  hello:
    cmd: echo "hello $GREETING" > hello.txt
    outs: [hello.txt]
  bye:
    cmd: echo bye > bye.txt
    outs: [bye.txt]
  suicide:
    cmd: kill -9 $PPID
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git + DVC repo with two independent stages and one whose command kills the DVC running it."""
    path = tmp_path / "repo"
    path.mkdir()
    (path / "dvc.yaml").write_text(DVC_YAML)
    run(["git", "init", "-q", "-b", "main"], path)
    run_dvc("init", "-q", cwd=path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "repo"], path)
    return path


def test_it_runs_dvc_in_its_project_with_its_environment_two_at_a_time(repo):
    environment = project_env() | {"GREETING": "from the server"}
    with warm_dvc(repo, environment) as server, ThreadPoolExecutor(2) as pool:
        hello, bye = pool.map(server.run, [["repro", "--single-item", stage] for stage in ("hello", "bye")])
    assert hello.returncode == 0 and "Running stage 'hello'" in hello.stdout, hello
    assert bye.returncode == 0 and "Running stage 'bye'" in bye.stdout, bye
    assert (repo / "hello.txt").read_text() == "hello from the server\n"
    assert run_dvc("status", "hello", "bye", cwd=repo).stdout.strip() == "Data and pipelines are up to date."


def test_each_command_is_dvc_cli_with_its_own_output_and_exit_status(repo):
    with warm_dvc(repo, project_env()) as server:
        version = server.run(["--version"])
        wrong = server.run(["frobnicate"])
    assert version.returncode == 0 and version.stdout.strip() == dvc.__version__
    assert wrong.returncode != 0 and "frobnicate" in wrong.stderr


def test_a_dvc_killed_by_a_signal_reports_it_and_the_server_goes_on(repo):
    with warm_dvc(repo, project_env()) as server:
        killed = server.run(["repro", "--single-item", "suicide"])
        after = server.run(["--version"])
    assert killed.returncode == -signal.SIGKILL
    assert after.returncode == 0


def test_the_server_stops_once_its_owner_is_gone(repo, tmp_path):
    """An owner killed without cleaning up (os._exit) leaves no server behind."""
    owner = (
        "import os, sys; from pathlib import Path; from pipeline.warm_dvc import warm_dvc\n"
        f"with warm_dvc(Path({str(repo)!r}), dict(os.environ)) as server:\n"
        "    print(server.socket_path, flush=True); os._exit(0)\n"
    )
    socket_path = subprocess.run([sys.executable, "-c", owner], capture_output=True, text=True, check=True).stdout
    socket_path = socket_path.strip()
    try:
        deadline = time.monotonic() + 20
        while not _refused(socket_path):
            assert time.monotonic() < deadline, "the orphaned server still accepts connections"
            time.sleep(0.1)
    finally:
        shutil.rmtree(Path(socket_path).parent)  # its owner had no time to


def _refused(socket_path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(socket_path)
        except ConnectionRefusedError:
            return True
    return False


def test_a_server_that_cannot_start_is_one_error_line(repo, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'pipeline.warm_dvc' in sys.orig_argv:\n"
        "    sys.stderr.write('error: no DVC here\\n'); sys.stderr.flush(); os._exit(3)\n"
    )
    failing = warm_dvc(repo, project_env() | {"PYTHONPATH": str(shim)})
    with pytest.raises(PipelineError, match="the warm DVC server did not start: error: no DVC here"), failing:
        pass


def test_a_waiting_dvc_lock_retries_every_poll_seconds(tmp_path, monkeypatch):
    """Real DVC locks on one file: the waiter's retry delay is POLL_SECONDS, not DVC's 0.5 s."""
    monkeypatch.setattr(dvc.lock, "DEFAULT_TIMEOUT", dvc.lock.DEFAULT_TIMEOUT)  # restored afterwards
    poll_faster()
    holder = dvc.lock.Lock(str(tmp_path / "lock"))
    holder.lock()
    delays: list[float] = []

    def sleep_then_release(seconds: float) -> None:
        delays.append(seconds)
        if holder.is_locked:
            holder.unlock()

    monkeypatch.setattr(time, "sleep", sleep_then_release)
    waiter = dvc.lock.Lock(str(tmp_path / "lock"), wait=True)
    waiter.lock()
    waiter.unlock()
    assert delays == [pytest.approx(POLL_SECONDS)]


def test_without_the_knob_it_fails_in_one_line(monkeypatch):
    monkeypatch.delattr(dvc.lock, "DEFAULT_TIMEOUT")
    with pytest.raises(SystemExit, match="dvc.lock.DEFAULT_TIMEOUT is gone"):
        poll_faster()
