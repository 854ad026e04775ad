"""pipeline.dvc_cli, the one way the flow runs DVC: real DVC commands in a real repo, a waiting DVC
polling its lock every 50 ms, and how a failed `dvc repro -s` is told apart: transient (retried)
or the stage's own error (not)."""

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dvc.lock
import pytest

from pipeline import PipelineError, dvc_cli
from pipeline.dvc_cli import POLL_SECONDS, StageFailed, TransientStageFailure, failure_of, poll_faster
from tests.pipeline.conftest import make_dvc_repo

DVC_YAML = """\
stages:
  hello:
    cmd: echo "hello $GREETING" > hello.txt
    outs: [hello.txt]
  bye:
    cmd: echo bye > bye.txt
    outs: [bye.txt]
  failing:
    cmd: 'echo "error: no luck" >&2; exit 3'
  suicide:
    cmd: kill -9 $PPID
  waiting:
    cmd: 'echo started; for i in $(seq 200); do [ -f go ] && break; sleep 0.05; done; [ -f go ] && echo done'
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git + DVC repo with two independent stages, a failing one, and one whose command kills
    the DVC running it."""
    return make_dvc_repo(tmp_path / "repo", DVC_YAML)


def test_two_stages_run_at_once_in_their_project_with_the_callers_environment(repo, monkeypatch):
    monkeypatch.setenv("GREETING", "from the flow")
    with ThreadPoolExecutor(2) as pool:
        hello, bye = pool.map(lambda stage: dvc_cli.repro(repo, stage), ["hello", "bye"])
    assert hello.outcome == bye.outcome == "ran", (hello, bye)
    assert (repo / "hello.txt").read_text() == "hello from the flow\n"
    assert dvc_cli.status(repo) == {"failing", "suicide", "waiting"}
    assert dvc_cli.repro(repo, "hello").outcome == "up to date"


def test_a_stage_prints_to_the_caller_while_it_runs_without_dvcs_hints(repo):
    """The stage waits for a file that the caller writes only once it has read the stage's first
    line: output delivered at the end would leave it waiting until it fails. The caller gets every
    line but blank ones and DVC's git/autostage/push advice, which the output keeps."""
    seen = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "started":
            (repo / "go").touch()

    done = dvc_cli.repro(repo, "waiting", on_line=on_line)
    assert done.outcome == "ran"
    assert seen.index("started") < seen.index("done")
    hints = ["To track the changes with git, run:", "\tgit add dvc.lock", "To enable auto staging, run:"]
    hints += ["\tdvc config core.autostage true", "Use `dvc push` to send your updates to remote storage."]
    printed = done.output.splitlines()
    assert set(hints) <= set(printed), "what DVC 3 prints after a stage; DVC changed its words?"
    assert seen == [line for line in printed if line.strip() and line not in hints], "the rest, in order, whole"


def test_a_failed_stage_is_its_own_error_line_and_keeps_dvc_output(repo):
    with pytest.raises(StageFailed) as caught:
        dvc_cli.repro(repo, "failing")
    assert type(caught.value) is StageFailed
    assert str(caught.value) == "stage 'failing' failed: error: no luck"
    assert "exited with 3" in caught.value.output


def test_a_dvc_killed_by_a_signal_is_transient(repo):
    with pytest.raises(TransientStageFailure):
        dvc_cli.repro(repo, "suicide")
    killed = dvc_cli.run(repo, "repro", "--single-item", "suicide")
    assert killed.returncode == -signal.SIGKILL


def test_a_failed_command_is_one_line_with_dvcs_first_error(repo):
    with pytest.raises(PipelineError, match=r"^dvc metrics diff nonexistent-rev --json: ERROR: ") as caught:
        dvc_cli.output(repo, "metrics", "diff", "nonexistent-rev", "--json")
    assert "\n" not in str(caught.value)


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


DVC_FAILED = "ERROR: failed to reproduce 'prune@lrr-round0': failed to run: python -m stages.prune, exited with {code}"


def completed(stderr: str, returncode: int = 255) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(args=["dvc"], returncode=returncode, stdout="", stderr=stderr)


@pytest.mark.parametrize("code", [-9, -15, 137, 143])
def test_a_command_killed_by_a_signal_is_transient_whichever_shell_reports_it(code):
    failure = failure_of("prune@lrr-round0", completed(DVC_FAILED.format(code=code)))
    assert isinstance(failure, TransientStageFailure)
    assert str(failure).startswith("stage 'prune@lrr-round0' failed: ERROR: failed to reproduce")


@pytest.mark.parametrize("code", [1, 2, 127])
def test_a_command_that_exits_on_its_own_is_not_retried(code):
    failure = failure_of("prune@lrr-round0", completed(DVC_FAILED.format(code=code)))
    assert type(failure) is StageFailed


def test_the_stage_own_error_line_is_the_message():
    output = "error: params.yaml: train.epochs: must be > 0\n" + DVC_FAILED.format(code=2)
    failure = failure_of("train", completed(output))
    assert str(failure) == "stage 'train' failed: error: params.yaml: train.epochs: must be > 0"
    assert type(failure) is StageFailed


def test_lock_contention_is_transient():
    output = "ERROR: Unable to acquire lock. Most likely another DVC process is running"
    assert isinstance(failure_of("evaluate", completed(output)), TransientStageFailure)


def test_dvc_itself_killed_is_transient():
    assert isinstance(failure_of("evaluate", completed("", returncode=-9)), TransientStageFailure)
