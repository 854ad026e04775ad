"""`python -m pipeline.cluster`: run the pipeline on Prefect workers on many machines, each stage once.

    python -m pipeline.cluster deploy            # once per Prefect server: the pool and the deployment
    python -m pipeline.cluster worker            # on every machine (per GPU), in its own clone
    python -m pipeline.cluster run [-S KEY=VAL]  # in the coordinator's clone, at a pushed commit

No scheduler of our own: Prefect's work pool hands stages to whichever worker is free, and DVC's
run-cache on the shared DVC remote carries results between machines. A stage whose result can
travel (no `persist`, no `always_changed`, no `cache: false` output) is one flow run of the
`stage-job` deployment: in the worker's clone, the exact commit, `dvc repro --pull <stage>`
(upstream stages come back from the run-cache), `dvc push --run-cache`. The coordinator
dispatches them in DAG order, as many at once as workers are online, then runs `dvc repro
--pull` in its own workspace: that restores every dispatched stage and runs only the rest
(validate, evaluate, report), as on one machine. It refuses, one line each, what would make
workers compute something else than the coordinator sees: a dirty workspace, an unpushed HEAD,
no DVC remote.
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from functools import cache
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from pipeline import PipelineError, dvc_cli
from pipeline.dag import Graph, read_graph, run_cacheable
from pipeline.options import RunOptions, plan_run, write_changes
from pipeline.tasks import StageLog
from pipeline.workspace import LOCK_FILE, git

POOL = "rewind-cluster"
DEPLOYMENT = "stage-job/cluster"  # flow name / deployment name, as prefect-cluster.yaml registers it
PREFECT_FILE = "prefect-cluster.yaml"
CLONE_ENV = "REWIND_CLONE"  # a worker's clone; its deployment's pull step changes into it
RECORD = "cluster-job "  # prefix of the one log line per job that says where and what it ran


def ran_stages(dvc_stdout: str) -> list[str]:
    """The stages DVC ran commands for (not those it restored), in its order."""
    return [line.split("'")[1] for line in dvc_stdout.splitlines() if line.startswith("Running stage '")]


# ---- the worker side: one stage, in the worker's own clone ------------------------------------


@flow(name="stage-job", persist_result=False)
def stage_job(sha: str, stage: str, local_stages: list[str], overrides: dict[str, Any] | None = None) -> None:
    """Reproduce `stage` at commit `sha` in this worker's clone and push it to the run-cache.

    `local_stages` are the stages that cannot travel (validate): DVC may run those here too.
    Any other stage DVC runs should have come from the run-cache; running it would mean two
    machines computed it, so the job fails naming it and pushes nothing.
    """
    logger = get_run_logger()
    clone = Path(os.environ.get(CLONE_ENV) or ".").resolve()
    started = time.time()
    checkout(clone, sha)
    if overrides:
        write_changes(clone, overrides)
    checked_out = time.time()
    logger.info("dvc repro --pull %s in %s", stage, clone)
    env = dvc_cli.parallel_stage_env()
    log = StageLog(stage, logger)  # into the job's log as DVC and the stage print it, as for a flow's stage
    result = dvc_cli.streamed(clone, "repro", "--pull", stage, on_line=log.line, env=env)
    reproduced = time.time()
    if result.returncode != 0:
        raise dvc_cli.failure_of(stage, result)
    ran = ran_stages(result.stdout)
    foreign = [name for name in ran if name != stage and name not in local_stages]
    if foreign:
        raise PipelineError(
            f"stage {stage!r}: DVC also ran {', '.join(foreign)}, which should have come from the run-cache "
            "(not pushed by the worker that ran it?); nothing pushed"
        )
    dvc_cli.output(clone, "push", "--run-cache")
    record = {"stage": stage, "ran": stage in ran, "host": socket.gethostname(), "clone": str(clone)}
    times = {"start": started, "checked_out": checked_out, "reproduced": reproduced, "end": time.time()}
    logger.info("%s%s", RECORD, json.dumps(record | times))


def checkout(clone: Path, sha: str) -> None:
    """The exact commit in the worker's clone, without the committed dvc.lock.

    `checkout -f` because the previous job left dvc.lock and perhaps params.yaml changed (a
    `git pull` would refuse). The lock goes because a committed entry whose outputs are not on
    the remote makes DVC recompute a stage the run-cache could restore.
    """
    git(clone, "fetch", "--quiet")
    try:
        git(clone, "cat-file", "-e", f"{sha}^{{commit}}")
    except PipelineError:
        raise PipelineError(f"worker clone {clone} cannot reach commit {sha[:12]} after git fetch") from None
    git(clone, "checkout", "--quiet", "-f", "--detach", sha)
    (clone / LOCK_FILE).unlink(missing_ok=True)


# ---- the coordinator ---------------------------------------------------------------------------


def preflight(project: Path, git_remote: str) -> str:
    """The commit the workers will check out; PipelineError, one line, if they could not or would differ."""
    changed = git(project, "status", "--porcelain").splitlines()
    if changed:
        names = ", ".join(line[3:] for line in changed[:5]) + (", …" if len(changed) > 5 else "")
        raise PipelineError(f"workspace differs from git HEAD ({names}): workers only see commits; commit and push")
    sha = git(project, "rev-parse", "HEAD").strip()
    git(project, "fetch", "--quiet", git_remote)
    if not git(project, "branch", "--remotes", "--contains", sha, "--list", f"{git_remote}/*").strip():
        raise PipelineError(
            f"HEAD {sha[:12]} is not pushed to git remote {git_remote!r}, where workers fetch; git push"
        )
    default = dvc_cli.run(project, "remote", "default")
    if default.returncode != 0:
        raise PipelineError("no default DVC remote: workers share results through it; dvc remote add -d <name> <url>")
    name = default.stdout.strip()
    if dvc_cli.run(project, "config", f"remote.{name}.verify").stdout.strip().lower() != "true":
        raise PipelineError(
            f"DVC remote {name!r} does not verify what workers pull: a damaged object would pass as a result; "
            f"dvc remote modify {name} verify true (README: Sharing results)"
        )
    return sha


def dispatch_graph(graph: Graph, travelling: set[str]) -> Graph:
    """The travelling stages, each with the travelling stages it needs, looking through local ones.

    (prepare depends on validate, which cannot travel: the worker runs validate itself, so
    prepare needs no dispatched stage before it.)
    """

    @cache
    def needs(stage: str) -> frozenset[str]:
        found: set[str] = set()
        for dep in graph[stage]:
            found |= {dep} if dep in travelling else needs(dep)
        return frozenset(found)

    return {stage: needs(stage) for stage in travelling}


async def dispatch(graph: Graph, job: Callable[[str], Awaitable[None]], jobs: int) -> None:
    """Run `job` on every stage of `graph` after the stages it needs, at most `jobs` at once.

    After a failure nothing new starts; running jobs finish (their results are cached anyway),
    then the first failure is raised.
    """
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    ready: list[str] = []
    running: dict[asyncio.Task, str] = {}
    failure: BaseException | None = None
    while True:
        if failure is None and sorter.is_active():
            ready.extend(sorted(sorter.get_ready()))
        while failure is None and ready and len(running) < jobs:
            stage = ready.pop(0)
            running[asyncio.ensure_future(job(stage))] = stage
        if not running:
            break
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            stage = running.pop(task)
            if task.exception() is not None:
                failure = failure or task.exception()
            else:
                sorter.done(stage)
    if failure is not None:
        raise failure


async def run_on_pool(stage: str, parameters: dict[str, Any], retries: int) -> None:
    """One `stage-job` flow run for `stage`, waited for; a crashed run (a worker died) is dispatched again."""
    from prefect.deployments import arun_deployment

    for attempt in range(retries + 1):
        print(f"dispatch {stage}" + (f" (again, {attempt})" if attempt else ""), flush=True)
        flow_run = await arun_deployment(
            DEPLOYMENT, parameters=parameters | {"stage": stage}, flow_run_name=stage, timeout=None, poll_interval=1
        )
        state = flow_run.state
        if state is not None and state.is_completed():
            print(f"done     {stage}", flush=True)
            return
        if state is None or not state.is_crashed() or attempt == retries:
            name = state.name if state else "lost"
            raise PipelineError(f"stage {stage!r} {name.lower()} on a worker: {(state and state.message) or ''}")


async def online_workers() -> int:
    """Workers of the pool that Prefect has heard from lately."""
    from prefect import get_client

    async with get_client() as client:
        workers = await client.read_workers_for_work_pool(POOL)
    return sum(1 for worker in workers if str(worker.status).upper().endswith("ONLINE"))


def finish(project: Path, overrides: dict[str, Any], dispatched: set[str]) -> list[str]:
    """`dvc repro --pull` here (`dvc exp run --pull -S` with overrides), then `dvc push --run-cache`.

    It must restore every dispatched stage from the run-cache; recomputing one would mean its
    entry never reached the remote, and the run fails naming it. Returns the stages it ran.
    """
    args = ["exp", "run", "--pull", *(f"-S{k}={json.dumps(v)}" for k, v in overrides.items())]
    args = args if overrides else ["repro", "--pull"]
    result = dvc_cli.run(project, *args)
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        errors = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("ERROR")]
        raise PipelineError(f"dvc {' '.join(args)}: {(errors or ['failed'])[0]}")
    ran = ran_stages(result.stdout)
    recomputed = [stage for stage in ran if stage in dispatched]
    if recomputed:
        raise PipelineError(
            f"dvc {' '.join(args)} recomputed dispatched stage(s) {', '.join(recomputed)}: "
            "their run-cache entries are not on the DVC remote"
        )
    dvc_cli.output(project, "push", "--run-cache")
    return ran


def coordinate(project: Path, overrides: dict[str, Any], jobs: int | None, git_remote: str, retries: int) -> None:
    """Check, dispatch every travelling stage to the pool, then reproduce here; PipelineError, one line."""
    changes = plan_run(RunOptions(overrides=overrides), project).changes  # validated before anything runs
    sha = preflight(project, git_remote)
    graph = read_graph(project)
    travelling = run_cacheable(project)
    jobs = jobs or asyncio.run(online_workers())
    if jobs < 1:
        raise PipelineError(
            f"no worker online in pool {POOL!r}: start one per machine (python -m pipeline.cluster worker)"
        )
    parameters = {"sha": sha, "local_stages": sorted(set(graph) - travelling), "overrides": changes}
    print(f"commit {sha[:12]}: {len(travelling)} stages to {jobs} worker(s) of pool {POOL!r}", flush=True)
    asyncio.run(dispatch(dispatch_graph(graph, travelling), lambda s: run_on_pool(s, parameters, retries), jobs))
    ran = finish(project, changes, travelling)
    print(f"ran here: {', '.join(ran) or 'nothing'}; every other stage restored from the run-cache", flush=True)


# ---- command line ------------------------------------------------------------------------------


def deploy(project: Path) -> None:
    """The `process` work pool (if missing) and the stage-job deployment of prefect-cluster.yaml."""
    from pipeline.serve import prefect

    env = {k: v for k, v in os.environ.items() if k != CLONE_ENV}  # resolved on each worker, not here
    try:
        prefect("work-pool", "inspect", POOL, env=env, cwd=project)
    except PipelineError:
        prefect("work-pool", "create", POOL, "--type", "process", env=env, cwd=project)
    prefect("deploy", "--prefect-file", PREFECT_FILE, "--all", "--no-prompt", env=env, cwd=project)


def worker(project: Path, name: str | None) -> None:
    """Become `prefect worker start` for the pool, one job at a time, its jobs run in `project` (a clone).

    Exec, not a child process: whoever stops this process (Ctrl-C, a supervisor, a test) stops
    the worker itself, never leaving it orphaned.
    """
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1"]
    command += ["--name", name] if name else []
    os.chdir(project)
    os.execve(sys.executable, command, os.environ | {CLONE_ENV: str(project)})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="the clone (default: here)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("deploy", help="create the work pool and register the stage-job deployment")
    start = commands.add_parser("worker", help="a worker taking one stage at a time into this clone")
    start.add_argument("--name", help="the worker's name in the Prefect UI (default: Prefect picks one)")
    launch = commands.add_parser("run", help="reproduce the pipeline on the pool's workers")
    launch.add_argument("--set", "-S", action="append", default=[], metavar="KEY=VALUE", help="a params.yaml override")
    launch.add_argument("--jobs", type=int, help="stages at once (default: the workers online)")
    launch.add_argument("--git-remote", default="origin", help="where workers fetch commits (default origin)")
    launch.add_argument("--retries", type=int, default=1, help="dispatches again of a crashed stage (default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """One of deploy, worker, run; a problem is one `error:` line and exit status 2."""
    from pipeline.__main__ import _override  # the same KEY=VALUE parsing as `python -m pipeline -S`

    args = parse_args(argv)
    project = args.project.resolve()
    try:
        if "PREFECT_API_URL" not in os.environ:
            raise PipelineError("PREFECT_API_URL is not set: coordinator and workers must share one Prefect server")
        if args.command == "deploy":
            deploy(project)
        elif args.command == "worker":
            worker(project, args.name)
        else:
            coordinate(project, dict(map(_override, args.set)), args.jobs, args.git_remote, args.retries)
    except PipelineError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
