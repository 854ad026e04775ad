"""One Prefect task per DVC stage: `dvc --wait-for-lock repro -s <stage>`, nothing else.

DVC decides whether the stage is stale, runs its command, caches its outputs and updates
dvc.lock, exactly as under `dvc repro`. Two stages of different branches can run at once: DVC
releases its repository lock while a stage's command runs and guards the stage's own files
with its read/write locks. What can fail for reasons that go away on a second try (lock
contention, a command killed by a signal, e.g. by the OOM killer) is retried; a stage that
fails on its own terms (an `error:` line, a traceback) is not, since it would fail again.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from pydantic import BaseModel

from pipeline.warm_dvc import WarmDvc

Outcome = Literal["ran", "restored", "up to date"]

# DVC's words for "another process holds what I need"; gone once that process is done.
LOCK_CONTENTION = re.compile(r"is busy, it is being blocked by|Unable to acquire lock|Lock file .* is busy")
# DVC's StageCmdFailedError ends "exited with <code>". A command killed by a signal exits with a
# negative code when the shell execs it (bash), with 128 + the signal when the shell waits for it
# (dash, /bin/sh where $SHELL is unset): SIGKILL is -9 or 137.
EXIT_CODE = re.compile(r"exited with (-?\d+)")


class StageRun(BaseModel):
    """What one stage task did: DVC's verdict and the wall seconds of its `dvc repro -s`."""

    stage: str
    outcome: Outcome
    seconds: float
    started: float  # time.time() at start, for timelines in the benchmark


class StageFailed(Exception):
    """The stage's `dvc repro -s` failed; the message names the stage and its first error line."""


class TransientStageFailure(StageFailed):
    """A failure that may pass on a retry (lock contention, a killed command)."""


def stage_env() -> dict[str, str]:
    """The environment of a stage: this interpreter's bin first on PATH (dvc.yaml runs `python`), no telemetry."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(DVC_NO_ANALYTICS="1", DO_NOT_TRACK="1")
    return env


def parallel_stage_env() -> dict[str, str]:
    """stage_env for stages that run side by side: OpenMP threads that wait sleep instead of spinning.

    Two stages each with a thread per core oversubscribe the cores; spinning threads then slow
    training ten-fold. The wait policy changes no result (checked bit for bit); the thread count
    would, so it stays as under `dvc repro`.
    """
    env = stage_env()
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def outcome_of(stage: str, stdout: str) -> Outcome:
    """DVC's verdict from its output: ran the command, restored from the run-cache, or nothing to do."""
    if f"Stage '{stage}' is cached - skipping run" in stdout:
        return "restored"
    if f"Running stage '{stage}'" in stdout:
        return "ran"
    return "up to date"


def failure_of(stage: str, result: subprocess.CompletedProcess) -> StageFailed:
    """The exception for a failed `dvc repro -s`: one line with the most telling error, typed by cause."""
    output = f"{result.stdout}\n{result.stderr}"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    own = [line for line in lines if line.startswith("error:")]  # a stage's one-line RewindError
    dvc_errors = [line for line in lines if line.startswith("ERROR:")]
    reason = (own or dvc_errors or lines or [f"exit status {result.returncode}"])[0]
    message = f"stage {stage!r} failed: {reason}"
    if LOCK_CONTENTION.search(output) or killed_by_signal(output) or result.returncode < 0:
        return TransientStageFailure(message)
    return StageFailed(message)


def killed_by_signal(output: str) -> bool:
    """Whether DVC reports the stage's command as ended by a signal, through whichever shell ran it."""
    return any(code < 0 or 128 < code < 160 for code in map(int, EXIT_CODE.findall(output)))


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry a TransientStageFailure only."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientStageFailure)


@task(
    name="dvc-stage",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,  # DVC, not Prefect, decides what is stale
    persist_result=False,
)
def run_stage(dvc_socket: str, stage: str, check: bool = True) -> StageRun:
    """Run `stage` through the flow's warm DVC (pipeline.warm_dvc) at `dvc_socket`; its output
    goes to the task's log.

    `check=False` is the flow's word that DVC already found the stage up to date (`dvc status`
    before the run, and no upstream stage has run since): no process is started.
    """
    logger = get_run_logger()
    started_at, started = time.time(), time.perf_counter()
    if not check:
        logger.info("%s: up to date (dvc status before the run; no upstream stage ran)", stage)
        return StageRun(stage=stage, outcome="up to date", seconds=0.0, started=started_at)
    result = WarmDvc(dvc_socket).run(["repro", "--single-item", stage])
    seconds = time.perf_counter() - started
    output = "\n".join(part.rstrip() for part in (result.stdout, result.stderr) if part.strip())
    if result.returncode != 0:
        logger.error("dvc repro -s %s:\n%s", stage, output)
        raise failure_of(stage, result)
    outcome = outcome_of(stage, result.stdout)
    logger.info("%s: %s in %.1f s\n%s", stage, outcome, seconds, output)
    return StageRun(stage=stage, outcome=outcome, seconds=seconds, started=started_at)


@task(name="not-run", retries=0, cache_policy=NO_CACHE, persist_result=False)
def not_run(stage: str, failed_upstream: list[str]) -> State:
    """Stands for a stage that cannot run because a stage it depends on failed: visible, and Failed."""
    names = ", ".join(repr(name) for name in failed_upstream)
    return Failed(message=f"stage {stage!r} not run: upstream stage {names} failed")
