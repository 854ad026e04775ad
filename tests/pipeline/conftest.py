"""Fixtures of the flow tests: one Prefect test server per session, tiny projects run by the flow."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import Log, TaskRun
from prefect.client.schemas.sorting import LogSort
from prefect.states import State
from prefect.testing.utilities import prefect_test_harness

from bench.flow import stage_spans
from pipeline.flow import RunSummary, rewind
from pipeline.options import RunOptions
from tests.conftest import ROOT, dvc, make_project, project_env, run, tiny_params

ONE_ROUND = [{"id": 0, "prev": "../dense"}]
LOG_PAGE = 200  # the server's default and largest page of logs
RECORDED_WAIT_S = 10  # the server records task runs and logs from what the client sends after the flow


class Flowed(NamedTuple):
    """The `flowed` fixture: the project the flow ran, its summary, the `dvc repro` reference, each
    stage task's [start, end] and the flow run's id."""

    project: Path
    summary: RunSummary
    reference: Path
    spans: dict[str, tuple[float, float]]
    flow_run_id: UUID


def flow_params() -> dict:
    """tiny_params cut further for the flow tests: two strategies (each exported) and the reinit
    control, one round, the tiny sweep (13 stages)."""
    return tiny_params(compare=["ft", "lrr"], rounds=ONE_ROUND)


def make_dvc_repo(path: Path, dvc_yaml: str) -> Path:
    """A git + DVC repo at `path` with `dvc_yaml` as its pipeline, committed."""
    path.mkdir()
    (path / "dvc.yaml").write_text(dvc_yaml)
    run(["git", "init", "-q", "-b", "main"], path)
    dvc("init", "-q", cwd=path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "repo"], path)
    return path


def make_flow_project(path: Path, params: dict) -> Path:
    """make_project plus prefect.yaml and prefect.toml, committed: what `prefect deploy` reads."""
    project = make_project(path, params)
    for name in ("prefect.yaml", "prefect.toml"):
        shutil.copy2(ROOT / name, project / name)
    run(["git", "add", "prefect.yaml", "prefect.toml"], project)
    run(["git", "commit", "-qm", "prefect deployment"], project)
    return project


def run_flow(project: Path, **options) -> tuple[State, RunSummary | BaseException]:
    """The flow on `project` in this process; (final state, its result or exception)."""
    state = rewind(options=RunOptions(**options), project=str(project), return_state=True)
    return state, state.result(raise_on_failure=False)


def task_runs(flow_run_id: UUID, count: int) -> dict[str, TaskRun]:
    """The flow run's task runs by name, once the server has all `count` of them in a final state."""
    deadline = time.monotonic() + RECORDED_WAIT_S
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            final = {run.name: run for run in runs if run.state and run.state.is_final()}
            if len(final) >= count or time.monotonic() > deadline:
                return final
            time.sleep(0.2)


def run_logs(flow_run_id: UUID) -> list[Log]:
    """Every log line of the finished flow run and its tasks on the server, oldest first.

    Prefect sends logs in batches, in order, after the run: wait until the flow's last line
    (`Finished in state ...`) is there, RECORDED_WAIT_S at most, then read them all at rest."""
    deadline = time.monotonic() + RECORDED_WAIT_S
    while time.monotonic() < deadline:
        logs = _all_logs(flow_run_id)
        if any(log.task_run_id is None and log.message.startswith("Finished in state") for log in logs):
            break
        time.sleep(0.2)
    return _all_logs(flow_run_id)


def _all_logs(flow_run_id: UUID) -> list[Log]:
    logs: list[Log] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                sort=LogSort.TIMESTAMP_ASC,
                limit=LOG_PAGE,
                offset=len(logs),
            )
            logs += page
            if len(page) < LOG_PAGE:
                return logs


def stale(project: Path) -> set[str]:
    return set(json.loads(dvc("status", "--json", cwd=project).stdout or "{}"))


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite) for every flow test of the session."""
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def flowed(prefect_server, tmp_path_factory) -> Flowed:
    """A tiny project run by the flow and committed, one reproduced by `dvc repro` on the same params,
    and each stage task's [start, end] as Prefect's server recorded them.

    `dvc repro` runs in the background meanwhile: the two share the two cores, not the wall time.
    """
    base = tmp_path_factory.mktemp("flow")
    reference = make_project(base / "reference", flow_params())
    log = base / "repro.log"
    with log.open("w") as output:
        repro = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"], cwd=reference, env=project_env(), stdout=output, stderr=output
        )
        project = make_flow_project(base / "project", flow_params())
        state, summary = run_flow(project)
        assert repro.wait(timeout=600) == 0, log.read_text()
    assert state.is_completed(), summary
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "results of the flow"], project)
    flow_run_id = state.state_details.flow_run_id
    return Flowed(project, summary, reference, stage_spans(flow_run_id, len(summary.stages)), flow_run_id)
