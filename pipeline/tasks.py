"""One Prefect task per DVC stage: `dvc repro -s <stage>` (pipeline.dvc_cli.repro), nothing else.

DVC decides whether the stage is stale, runs its command, caches its outputs and updates
dvc.lock, exactly as under `dvc repro`. Two stages of different branches can run at once: DVC
releases its repository lock while a stage's command runs and guards the stage's own files
with its read/write locks. What can fail for reasons that go away on a second try (lock
contention, a command killed by a signal, e.g. by the OOM killer) is retried; a stage that
fails on its own terms (an `error:` line, a traceback) is not, since it would fail again.

While a stage runs, every line DVC and the stage print goes to the task's log as it comes, and
the epoch lines of its training runs move a progress artifact of the stage, so the UI shows a
long stage advancing rather than a silent one.
"""

import re
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from pydantic import BaseModel

from pipeline import dvc_cli
from pipeline.dvc_cli import Outcome, StageFailed, TransientStageFailure
from stages.shared.progress import stage_fraction


class StageRun(BaseModel):
    """What one stage task did: DVC's verdict."""

    stage: str
    outcome: Outcome


def progress_key(stage: str) -> str:
    """The key of a stage's progress artifact: Prefect's keys allow only `[a-z0-9-]`."""
    return "progress-" + re.sub(r"[^a-z0-9-]+", "-", stage.lower())


class StageProgress:
    """A stage's progress artifact, in whole percent of its training runs' epochs (as its epoch
    lines report them), updated only when the percent moves: at most a hundred calls to the API
    however fast the epochs come."""

    def __init__(self, stage: str) -> None:
        self._id = create_progress_artifact(0.0, key=progress_key(stage), description=f"`{stage}`: epochs trained")
        self._percent = 0

    def read(self, line: str) -> None:
        fraction = stage_fraction(line)
        if fraction is not None:
            self._set(int(fraction * 100))

    def done(self) -> None:
        self._set(100)

    def _set(self, percent: int) -> None:
        if percent > self._percent:
            self._percent = percent
            update_progress_artifact(self._id, float(percent))


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
def repro_stage(project: str, stage: str, check: bool = True) -> StageRun:
    """`dvc repro -s stage` in `project`; DVC's output goes to the task's log line by line as it
    comes, and its epoch lines to the stage's progress artifact.

    `check=False` is the flow's word that DVC already found the stage up to date (`dvc status`
    before the run, and no upstream stage has run since): no process is started.
    """
    logger = get_run_logger()
    if not check:
        logger.info("%s: up to date (dvc status before the run; no upstream stage ran)", stage)
        return StageRun(stage=stage, outcome="up to date")
    started = time.perf_counter()
    progress = StageProgress(stage)

    def on_line(line: str) -> None:
        if line.strip():
            logger.info("%s", line)
            progress.read(line)

    try:
        done = dvc_cli.repro(Path(project), stage, on_line)
    except StageFailed as failure:
        logger.error("%s", failure)  # its output is in the log above, line by line
        raise
    progress.done()
    logger.info("%s: %s in %.1f s", stage, done.outcome, time.perf_counter() - started)
    return StageRun(stage=stage, outcome=done.outcome)


@task(name="not-run", retries=0, cache_policy=NO_CACHE, persist_result=False)
def not_run(stage: str, failed_upstream: list[str]) -> State:
    """Stands for a stage that cannot run because a stage it depends on failed: visible, and Failed."""
    names = ", ".join(repr(name) for name in failed_upstream)
    return Failed(message=f"stage {stage!r} not run: upstream stage {names} failed")
