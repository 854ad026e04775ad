"""A stage that fails, and one killed once: the flow fails naming the stage, retries the killed one,
finishes the other branch, writes nothing half-way, and a rerun does only what is left."""

import json
import logging

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from bench.repro import lock_outs
from tests.conftest import make_project, run
from tests.pipeline.conftest import flow_params, run_flow, run_logs, stale

pytestmark = pytest.mark.slow

# Python imports sitecustomize from PYTHONPATH at start-up: a stage command (not the stage code)
# that fails for retrain@ft-round0, and that SIGKILLs itself the first time prune@lrr-round0 runs.
SHIM = """
import os, signal, sys
from pathlib import Path

command = " ".join(sys.orig_argv)
if "stages.retrain --strategy ft --round 0" in command:
    print("error: injected failure of the ft retraining", file=sys.stderr)
    sys.exit(2)
if "stages.prune --strategy lrr --round 0" in command:
    marker = Path(__file__).with_name("killed-once")
    if not marker.exists():
        marker.write_text("")
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def failed_run(prefect_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("failure")
    project = make_project(base / "project", flow_params())
    (base / "shim").mkdir()
    (base / "shim/sitecustomize.py").write_text(SHIM)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(base / "shim"))
        # No $SHELL, as in CI: DVC runs commands through /bin/sh, which reports SIGKILL as exit 137.
        patch.delenv("SHELL", raising=False)
        state, error = run_flow(project, retries=1)
    with get_client(sync_client=True) as client:
        flow_run_id = state.state_details.flow_run_id
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return project, state, error, {task_run.name: task_run for task_run in task_runs}


def test_flow_fails_naming_the_stage_and_its_error(failed_run):
    _, state, error, _ = failed_run
    assert state.is_failed()
    assert "stage 'retrain@ft-round0' failed: error: injected failure of the ft retraining" in str(error)
    assert "not run: evaluate, export, report" in str(error)


def test_downstream_tasks_fail_naming_the_failed_stage(failed_run):
    _, _, _, tasks = failed_run
    for name in ("evaluate", "report"):
        assert tasks[name].state.is_failed()
        assert tasks[name].state.message == f"stage {name!r} not run: upstream stage 'retrain@ft-round0' failed"
    assert tasks["retrain@ft-round0"].state.is_failed()
    assert tasks["retrain@ft-round0"].run_count == 1, "a stage's own error is not retried"


def test_the_failed_stage_log_has_its_error_lines_at_error_level(failed_run):
    """The stage's own `error:` line and DVC's `ERROR:` lines stand out in the task's log (level ERROR)."""
    _, state, _, tasks = failed_run
    logs = [
        log for log in run_logs(state.state_details.flow_run_id) if log.task_run_id == tasks["retrain@ft-round0"].id
    ]
    errors = [log.message for log in logs if log.level == logging.ERROR]
    assert "error: injected failure of the ft retraining" in errors
    assert any(line.startswith("ERROR: failed to reproduce 'retrain@ft-round0'") for line in errors), errors


def test_killed_stage_is_retried_and_the_other_branch_completes(failed_run):
    project, _, _, tasks = failed_run
    assert tasks["prune@lrr-round0"].run_count == 2 and tasks["prune@lrr-round0"].state.is_completed()
    assert tasks["retrain@lrr-round0"].state.is_completed()
    recorded = lock_outs(project)
    assert {"prune@lrr-round0", "retrain@lrr-round0", "prune@ft-round0"} <= set(recorded)
    assert "retrain@ft-round0" not in recorded
    assert stale(project) == {"retrain@ft-round0", "export", "evaluate", "report"}


def test_nothing_half_written(failed_run):
    project, _, _, _ = failed_run
    assert not (project / "runs/ft/round-0/model.safetensors").exists()
    assert not (project / "results/metrics.json").exists()
    declared = {out["path"] for outs in lock_outs(project).values() for out in outs}
    files = run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], project).stdout.splitlines()
    stray = [
        line[3:]
        for line in files
        if not line[3:].startswith((".dvc/", ".rewind/", "dvc.lock"))
        and "__pycache__" not in line
        and not any(line[3:] == path or line[3:].startswith(path.rstrip("/") + "/") for path in declared)
    ]
    assert stray == []


def test_rerun_without_the_fault_does_only_what_is_left(prefect_server, failed_run):
    project, _, _, _ = failed_run
    state, summary = run_flow(project)
    assert state.is_completed(), summary
    ran = {name for name, stage in summary.stages.items() if stage.outcome != "up to date"}
    assert ran == {"retrain@ft-round0", "export", "evaluate", "report"}
    assert stale(project) == set()
    assert set(json.loads((project / "results/metrics.json").read_text())) == {"dense", "ft", "lrr", "reinit"}
