"""pipeline.dvc_waiting: DVC's CLI, polling its repository lock every 50 ms while it waits."""

import subprocess
import sys
import time

import dvc.lock
import pytest

from pipeline.dvc_waiting import POLL_SECONDS, poll_faster
from tests.conftest import ROOT


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


def test_it_is_dvc_cli_with_wait_for_lock(tmp_path):
    """Arguments reach DVC's own CLI unchanged: its version, and its error for an unknown command."""
    version = subprocess.run(
        [sys.executable, "-m", "pipeline.dvc_waiting", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip() == dvc.__version__
    wrong = subprocess.run(
        [sys.executable, "-m", "pipeline.dvc_waiting", "frobnicate"], cwd=tmp_path, capture_output=True, text=True
    )
    assert wrong.returncode != 0 and "frobnicate" in wrong.stderr
