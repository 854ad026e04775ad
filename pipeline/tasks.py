"""One Prefect task per DVC stage: `dvc repro -s <stage>` (pipeline.dvc_cli.repro), nothing else.

DVC decides whether the stage is stale, runs its command, caches its outputs and updates
dvc.lock, exactly as under `dvc repro`. Two stages of different branches can run at once: DVC
releases its repository lock while a stage's command runs and guards the stage's own files
with its read/write locks. What can fail for reasons that go away on a second try (lock
contention, a command killed by a signal, e.g. by the OOM killer) is retried; a stage that
fails on its own terms (an `error:` line, a traceback) is not, since it would fail again.

While a stage runs, the lines DVC and the stage print go to the task's log as they come, but
not all of them: DVC's hints after each stage are left out (pipeline.dvc_cli.says_something), a
stage's own timestamp is cut (Prefect's is the line's), and of the epoch lines of its training
runs only those that take the stage past a quarter of its training are logged at INFO, the others
at DEBUG (`PREFECT_LOGGING_LEVEL=DEBUG` shows them). A stage that trains also gets a progress
artifact that its epoch lines move, so the UI shows a long stage advancing rather than a silent one.

A stage ends Completed when DVC ran it, and in a Completed state named for what DVC did
otherwise: `Cached` (DVC restored its outputs from its run-cache) or `Skipped` (up to date).
"""

import logging
import re
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from pydantic import BaseModel

from pipeline import dvc_cli
from pipeline.dvc_cli import Outcome, StageFailed, TransientStageFailure
from stages.shared.progress import stage_fraction


class StageRun(BaseModel):
    """What one stage task did: DVC's verdict."""

    stage: str
    outcome: Outcome


# Python logging's asctime at the start of a stage's line (stages.shared.entry's format): Prefect
# stamps every log line already.
STAGE_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
MILESTONES = 4  # epoch lines per stage at INFO: at 25, 50, 75 and 100% of its training
STATE_NAMES: dict[Outcome, str] = {"ran": "Completed", "restored": "Cached", "up to date": "Skipped"}


def progress_key(stage: str) -> str:
    """The key of a stage's progress artifact: Prefect's keys allow only `[a-z0-9-]`."""
    return "progress-" + re.sub(r"[^a-z0-9-]+", "-", stage.lower())


class StageLog:
    """Where the lines a stage's `dvc repro -s` prints go: the task's log, without the stage's own
    timestamp; its epoch lines at DEBUG but for the MILESTONES ones, and into its progress artifact.

    The artifact is created at the first epoch line, so a stage that trains nothing (or that DVC
    restored) has none. It holds the percent of the stage's training runs done, counting each
    run's epochs (each run weighs the same), and is updated only when that percent moves: at most
    a hundred calls to the API however fast the epochs come.
    """

    def __init__(self, stage: str, logger: logging.LoggerAdapter) -> None:
        self._stage, self._logger = stage, logger
        self._id: UUID | None = None
        self._percent = 0

    def line(self, line: str) -> None:
        text = STAGE_TIMESTAMP.sub("", line, count=1)
        fraction = stage_fraction(text)
        if fraction is None:
            self._logger.log(logging.ERROR if text.startswith(("ERROR:", "error:")) else logging.INFO, "%s", text)
            return
        percent = int(fraction * 100)
        milestone = percent * MILESTONES // 100 > self._percent * MILESTONES // 100
        self._logger.log(logging.INFO if milestone else logging.DEBUG, "%s", text)
        self._set(percent)

    def done(self) -> None:
        """The stage ended well: its training, if it trained, is all done."""
        if self._id is not None:
            self._set(100)

    def _set(self, percent: int) -> None:
        if self._id is None:
            description = f"`{self._stage}`: its training runs, % done (counting their epochs)"
            self._id = create_progress_artifact(0.0, key=progress_key(self._stage), description=description)
        if percent > self._percent:
            self._percent = percent
            update_progress_artifact(self._id, float(percent))


def finished(run: StageRun, message: str) -> State:
    """The task's final state: Completed, named for what DVC did (STATE_NAMES), `run` its result.
    Prefect logs it as the task's last line: `Finished in state Cached('restored in 1.2 s')`."""
    return Completed(name=STATE_NAMES[run.outcome], message=message, data=run)


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
def repro_stage(project: str, stage: str, check: bool = True) -> State:
    """`dvc repro -s stage` in `project`; what it prints goes to the task's log as it comes (see
    StageLog). Returns the final state (`finished`), its result a StageRun.

    `check=False` is the flow's word that DVC already found the stage up to date (`dvc status`
    before the run, and no upstream stage has run since): no process is started.
    """
    logger = get_run_logger()
    if not check:
        return finished(StageRun(stage=stage, outcome="up to date"), "up to date (dvc status before the run)")
    started = time.perf_counter()
    log = StageLog(stage, logger)
    try:
        done = dvc_cli.repro(Path(project), stage, log.line)
    except StageFailed as failure:
        logger.error("%s", failure)  # its output is in the log above, line by line
        raise
    log.done()
    return finished(
        StageRun(stage=stage, outcome=done.outcome), f"{done.outcome} in {time.perf_counter() - started:.1f} s"
    )


@task(name="not-run", retries=0, cache_policy=NO_CACHE, persist_result=False)
def not_run(stage: str, failed_upstream: list[str]) -> State:
    """Stands for a stage that cannot run because a stage it depends on failed: visible, and Failed."""
    names = ", ".join(repr(name) for name in failed_upstream)
    return Failed(message=f"stage {stage!r} not run: upstream stage {names} failed")
