"""Several machines on one: a bare git origin, a local directory as the DVC remote, a coordinator
clone and two worker clones (each its own DVC cache and PREFECT_HOME), a real `prefect server`,
the `process` pool with two `--limit 1` workers, real DVC. Every dispatched stage runs once,
somewhere; the coordinator restores them and runs only what cannot travel; the results equal a
local `dvc repro` bit for bit. Refusals are checked first, without a server."""

import asyncio
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from bench.cluster import cluster_params, cluster_sandbox, records, start_worker, wait_for_workers
from bench.cluster import flow_runs as named_flow_runs
from bench.repro import lock_outs
from bench.sandbox import GIT_IDENTITY
from pipeline import PipelineError
from pipeline.cluster import dispatch, dispatch_graph
from pipeline.serve import free_port, local_server, stop
from tests.conftest import dvc, make_project, project_env, run
from tests.pipeline.conftest import stale

LOCAL = {"validate", "evaluate", "report"}  # persist / cache: false outputs: they never travel


def cluster(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline.cluster", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> dict[str, Path]:
    return cluster_sandbox(tmp_path_factory.mktemp("cluster"), cluster_params())


# ---- dispatching, alone --------------------------------------------------------------------


def test_dispatch_graph_looks_through_stages_that_cannot_travel():
    graph = {
        "validate": frozenset(),
        "prepare": frozenset({"validate"}),
        "train": frozenset({"prepare"}),
        "evaluate": frozenset({"train"}),
        "late": frozenset({"evaluate"}),
    }
    travelling = {"prepare", "train", "late"}
    expected = {"prepare": frozenset(), "train": frozenset({"prepare"}), "late": frozenset({"train"})}
    assert dispatch_graph(graph, travelling) == expected


def test_dispatch_keeps_dag_order_and_the_job_limit_and_stops_after_a_failure():
    graph = {
        "a": frozenset(),
        "b": frozenset({"a"}),
        "c": frozenset({"a"}),
        "d": frozenset({"a"}),
        "e": frozenset("bc"),
    }
    started, running, most = [], set(), [0]

    async def job(stage: str) -> None:
        assert graph[stage] <= set(started) - running, f"{stage} started before what it needs ended"
        started.append(stage)
        running.add(stage)
        most[0] = max(most[0], len(running))
        await asyncio.sleep(0.01)
        running.discard(stage)
        if stage == "b":
            raise PipelineError("b failed")

    with pytest.raises(PipelineError, match="b failed"):
        asyncio.run(dispatch(graph, job, jobs=2))
    assert started == ["a", "b", "c"] and most[0] == 2, "c, started beside b, ends; d and e never start"


# ---- refusals: one line, before Prefect is asked for anything ----------------------------------

UNREACHABLE_API = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}  # nothing listens: a dispatch would fail


def test_refuses_a_dirty_workspace(sandbox, tmp_path):
    clone = tmp_path / "dirty"
    run(["git", "clone", "-q", str(sandbox["origin"]), str(clone)], tmp_path)
    (clone / "params.yaml").write_text((clone / "params.yaml").read_text() + "\n# edited\n")
    line = one_error_line(cluster("run", cwd=clone, env=project_env() | UNREACHABLE_API))
    assert "workspace differs from git HEAD (params.yaml)" in line


def test_refuses_an_unpushed_head(sandbox, tmp_path):
    clone = tmp_path / "ahead"
    run(["git", "clone", "-q", str(sandbox["origin"]), str(clone)], tmp_path)
    run(["git", "commit", "-q", "--allow-empty", "-m", "local only"], clone)
    line = one_error_line(cluster("run", cwd=clone, env=project_env() | UNREACHABLE_API))
    assert "is not pushed to git remote 'origin'" in line


def test_refuses_without_a_dvc_remote(sandbox, tmp_path):
    clone = tmp_path / "no-remote"
    run(["git", "clone", "-q", str(sandbox["origin"]), str(clone)], tmp_path)
    dvc("remote", "remove", "shared", cwd=clone)
    run(["git", "commit", "-qam", "no remote"], clone)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/no-remote"], clone)
    line = one_error_line(cluster("run", cwd=clone, env=project_env() | UNREACHABLE_API))
    assert "no default DVC remote" in line


def test_refuses_a_dvc_remote_that_does_not_verify(sandbox, tmp_path):
    clone = tmp_path / "unverified"
    run(["git", "clone", "-q", str(sandbox["origin"]), str(clone)], tmp_path)
    dvc("remote", "modify", "shared", "verify", "false", cwd=clone)
    run(["git", "commit", "-qam", "remote unverified"], clone)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/unverified"], clone)
    line = one_error_line(cluster("run", cwd=clone, env=project_env() | UNREACHABLE_API))
    assert "DVC remote 'shared' does not verify what workers pull" in line
    assert "dvc remote modify shared verify true" in line


def test_refuses_without_a_prefect_server(sandbox):
    env = {k: v for k, v in project_env().items() if k != "PREFECT_API_URL"}
    assert "PREFECT_API_URL is not set" in one_error_line(cluster("run", cwd=sandbox["coordinator"], env=env))


# ---- end to end: two workers, each stage once ------------------------------------------------


def flow_runs(api: str) -> int:
    return httpx.post(f"{api}/flow_runs/count", json={}, timeout=5).json()


@pytest.mark.slow
def test_two_workers_run_every_stage_once_and_the_coordinator_restores_them(sandbox, tmp_path):
    reference = make_project(tmp_path / "reference", cluster_params())
    with (tmp_path / "reference.log").open("w") as log:
        local = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=reference, env=project_env(), stdout=log)
    coordinator = sandbox["coordinator"]
    with local_server(free_port(), tmp_path / "server-home", coordinator, log=tmp_path / "server.log") as env:
        env = env | GIT_IDENTITY
        api = env["PREFECT_API_URL"]
        deployed = cluster("deploy", cwd=coordinator, env=env, timeout=120)
        assert deployed.returncode == 0, deployed.stderr
        workers = [
            start_worker(sandbox[n], n, env, tmp_path / f"home-{n}", tmp_path / f"{n}.log") for n in ("w1", "w2")
        ]
        try:
            wait_for_workers(api, 2)
            started = time.monotonic()
            result = cluster("run", cwd=coordinator, env=env, timeout=600)
            elapsed = time.monotonic() - started
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            # Negative, against the same server: an unpushed HEAD dispatches nothing.
            before = flow_runs(api)
            ahead = tmp_path / "ahead"
            run(["git", "clone", "-q", str(sandbox["origin"]), str(ahead)], tmp_path)
            run(["git", "commit", "-q", "--allow-empty", "-m", "local only"], ahead)
            assert "not pushed" in one_error_line(cluster("run", cwd=ahead, env=env))
            assert flow_runs(api) == before
            by_name = named_flow_runs(api)
        finally:
            for process in workers:
                stop(process)
    print(f"cluster run: {elapsed:.0f} s")
    jobs = {name: records(tmp_path / f"{name}.log") for name in ("w1", "w2")}
    dispatched = set(lock_outs(coordinator)) - LOCAL
    ran = Counter(job["stage"] for both in jobs.values() for job in both if job["ran"])
    assert ran == Counter(dispatched), "every dispatched stage ran exactly once, on some worker"
    assert all(jobs.values()), "both workers took stages"
    prunes = [job for both in jobs.values() for job in both if job["stage"].startswith("prune@")]
    assert len({job["clone"] for job in prunes}) == 2, "sibling branches ran on different workers"
    # Dispatched side by side: both were on the server before either ended. (When each worker's job
    # process starts is the worker's business; on a loaded machine one may end before the other starts.)
    sibling_runs = [by_name[job["stage"]] for job in prunes]
    created = [datetime.fromisoformat(r["created"]) for r in sibling_runs]
    ended = [datetime.fromisoformat(r["end_time"]) for r in sibling_runs]
    assert max(created) < min(ended), "and at once"
    assert set(result.stdout.split("ran here: ")[1].split(";")[0].split(", ")) == LOCAL, "none dispatched"
    assert stale(coordinator) == set()
    assert "in sync" in dvc("status", "--cloud", cwd=coordinator).stdout
    assert local.wait(timeout=600) == 0
    assert lock_outs(coordinator) == lock_outs(reference), "the same bits as a local dvc repro"
    assert (coordinator / "results/metrics.json").read_bytes() == (reference / "results/metrics.json").read_bytes()
