"""The `rewind` flow: the DVC pipeline, one Prefect task per stage, independent branches in parallel.

Two entry points run the same flow: `rewind(options, project)`, which deployments start with the
options given in the UI or `prefect deployment run`, and `run_plan(plan)` for a RunPlan resolved
already (`python -m pipeline` resolves it before Prefect starts). Either way the options are
resolved against params.yaml once (options.plan_run), and the plan is passed on.

The flow reads the DAG from DVC, then submits each stage as soon as every stage it depends on
has completed, keeping at most `parallelism` running (options.stages_at_once); each stage is
`dvc repro -s` (pipeline.dvc_cli). A failed stage fails the stages downstream of it (as `not-run`
tasks that name it), while every other branch runs to its end, so their results are in dvc.lock
and the cache. Then the results artifact is published and, for a run with overrides, the
experiment is saved and the workspace restored (pipeline.workspace).
"""

from collections import Counter
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from pipeline import PipelineError, dvc_cli
from pipeline.dag import Graph, read_graph, topological_order
from pipeline.options import RunOptions, RunPlan, plan_run, stages_at_once
from pipeline.results import publish
from pipeline.tasks import StageRun, not_run, repro_stage
from pipeline.workspace import experiment

SHOWN_NOT_RUN = 8  # stages named in the failure message; the UI lists every one
MAX_THREADS = 64  # the thread pool's size; `parallelism` limits what is submitted to it


class PipelineFailed(Exception):
    """Some stages failed: the message names them and the stages that could not run."""


class RunSummary(BaseModel):
    """What a flow run did, stage by stage, and the experiment it saved (if any)."""

    stages: dict[str, StageRun]
    experiment: str | None = None
    changes: dict[str, object] = {}


FLOW = {"name": "rewind", "task_runner": ThreadPoolTaskRunner(max_workers=MAX_THREADS), "log_prints": True}


@flow(**FLOW)
def rewind(options: RunOptions = RunOptions(), project: str = ".") -> RunSummary:  # noqa: B008 (Prefect reads defaults)
    """Run the comparison as `dvc repro` would, with parallel branches; see the module docstring."""
    return run_plan.fn(plan_run(options, Path(project)))


@flow(**FLOW)
def run_plan(plan: RunPlan) -> RunSummary:
    """The flow for a run whose options are resolved already; see the module docstring."""
    root = Path(plan.project)
    with experiment(root, plan.changes, plan.options.experiment) as save:
        at_once = stages_at_once(plan.options, plan.params)
        stages = run_graph(read_graph(root), root, dvc_cli.status(root), at_once, plan.options.retries)
        publish(root, _heading(plan.changes))
        saved = save()
    if saved:
        get_run_logger().info("saved as DVC experiment %r; see `dvc exp show`", saved)
    return RunSummary(stages=stages, experiment=saved, changes=plan.changes)


def run_graph(graph: Graph, project: Path, stale: set[str], parallelism: int, retries: int) -> dict[str, StageRun]:
    """Run every stage once its upstream stages completed; raise PipelineFailed naming failures.

    A stage goes through `dvc repro -s` when `dvc status` listed it (`stale`) or a stage it
    depends on ran or was restored; DVC then decides. Any other stage is up to date already.
    """
    logger = get_run_logger()
    stage_task = repro_stage.with_options(retries=retries)
    waiting = topological_order(graph)
    done: dict[str, StageRun] = {}
    failed: dict[str, str] = {}  # stage → its failure, one line
    blocked: dict[str, list[str]] = {}  # stage → the failed stages that keep it from running
    running: dict[PrefectFuture, str] = {}
    while waiting or running:
        for name in [n for n in waiting if _failed_upstream(graph[n], failed, blocked)]:
            waiting.remove(name)
            blocked[name] = _failed_upstream(graph[name], failed, blocked)
            running[not_run.with_options(task_run_name=name).submit(name, blocked[name])] = name
        ready = [n for n in waiting if graph[n] <= done.keys()]
        for name in ready[: max(0, parallelism - _stages_running(running, blocked))]:
            waiting.remove(name)
            check = name in stale or any(done[up].outcome != "up to date" for up in graph[name])
            running[stage_task.with_options(task_run_name=name).submit(str(project), name, check)] = name
        if not running:
            raise PipelineError(f"stages never became ready: {waiting}")  # a cycle; DVC forbids them
        future = next(as_completed(list(running)))
        name = running.pop(future)
        if name in blocked:
            continue
        result = future.result(raise_on_failure=False)
        if future.state.is_completed():
            done[name] = result
        else:
            failed[name] = str(result)
            logger.error("%s", failed[name])
    logger.info("%s", tally(done, failed, blocked))
    if failed:
        raise PipelineFailed(_failure_message(failed, blocked))
    return done


def tally(done: dict[str, StageRun], failed: dict[str, str], blocked: dict[str, list[str]]) -> str:
    """The run's stages in one line, by what became of them, in the words of their task states
    (pipeline.tasks.STATE_NAMES): `14 stages: 9 ran, 0 cached (restored from DVC's run-cache),
    5 skipped (up to date)`, then how many failed and could not run, if any."""
    counts = Counter(run.outcome for run in done.values())
    parts = [f"{counts['ran']} ran", f"{counts['restored']} cached (restored from DVC's run-cache)"]
    parts.append(f"{counts['up to date']} skipped (up to date)")
    if failed:
        parts.append(f"{len(failed)} failed")
    if blocked:
        parts.append(f"{len(blocked)} not run")
    return f"{len(done) + len(failed) + len(blocked)} stages: {', '.join(parts)}"


def _failed_upstream(upstream: frozenset[str], failed: dict[str, str], blocked: dict[str, list[str]]) -> list[str]:
    """The failed stages at the root of `upstream`'s failures, sorted; empty when none failed."""
    roots = {u for u in upstream if u in failed}
    for u in upstream:
        roots.update(blocked.get(u, ()))
    return sorted(roots)


def _stages_running(running: dict[PrefectFuture, str], blocked: dict[str, list[str]]) -> int:
    return sum(1 for name in running.values() if name not in blocked)


def _failure_message(failed: dict[str, str], blocked: dict[str, list[str]]) -> str:
    message = "; ".join(failed[name] for name in sorted(failed))
    if blocked:
        names = sorted(blocked)
        more = f" and {len(names) - SHOWN_NOT_RUN} more" if len(names) > SHOWN_NOT_RUN else ""
        message += f"; not run: {', '.join(names[:SHOWN_NOT_RUN])}{more}"
    return message


def _heading(changes: dict[str, object]) -> str:
    if not changes:
        return "rewind results"
    return "rewind results with " + ", ".join(f"{key}={value!r}" for key, value in changes.items())
