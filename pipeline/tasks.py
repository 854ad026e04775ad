"""One Prefect task per DVC stage: `dvc repro -s <stage>` (pipeline.dvc_cli.repro), nothing else.

DVC decides whether the stage is stale, runs its command, caches its outputs and updates
dvc.lock, exactly as under `dvc repro`. Two stages of different branches can run at once: DVC
releases its repository lock while a stage's command runs and guards the stage's own files
with its read/write locks. What can fail for reasons that go away on a second try (lock
contention, a command killed by a signal, e.g. by the OOM killer) is retried; a stage that
fails on its own terms (an `error:` line, a traceback) is not, since it would fail again.
"""

import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from pydantic import BaseModel

from pipeline import dvc_cli
from pipeline.dvc_cli import Outcome, StageFailed, TransientStageFailure


class StageRun(BaseModel):
    """What one stage task did: DVC's verdict."""

    stage: str
    outcome: Outcome


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
    """`dvc repro -s stage` in `project`; DVC's output goes to the task's log.

    `check=False` is the flow's word that DVC already found the stage up to date (`dvc status`
    before the run, and no upstream stage has run since): no process is started.
    """
    logger = get_run_logger()
    if not check:
        logger.info("%s: up to date (dvc status before the run; no upstream stage ran)", stage)
        return StageRun(stage=stage, outcome="up to date")
    started = time.perf_counter()
    try:
        done = dvc_cli.repro(Path(project), stage)
    except StageFailed as failure:
        logger.error("dvc repro -s %s:\n%s", stage, failure.output)
        raise
    logger.info("%s: %s in %.1f s\n%s", stage, done.outcome, time.perf_counter() - started, done.output)
    return StageRun(stage=stage, outcome=done.outcome)


@task(name="not-run", retries=0, cache_policy=NO_CACHE, persist_result=False)
def not_run(stage: str, failed_upstream: list[str]) -> State:
    """Stands for a stage that cannot run because a stage it depends on failed: visible, and Failed."""
    names = ", ".join(repr(name) for name in failed_upstream)
    return Failed(message=f"stage {stage!r} not run: upstream stage {names} failed")
