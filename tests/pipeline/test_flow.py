"""The flow under a real (temporary) Prefect server on a tiny config: the same stages, outputs and
metrics as `dvc repro`, a results artifact, experiments for overrides, one-line errors."""

import base64
import json
import re

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    ArtifactFilterTaskRunId,
    LogFilter,
    LogFilterTaskRunId,
    TaskRunFilter,
    TaskRunFilterName,
)
from prefect.client.schemas.sorting import LogSort

from pipeline.flow import run_plan
from pipeline.options import RunOptions, plan_run
from pipeline.results import ARTIFACT_KEY, REPORT_KEY, TABLE_KEY, with_embedded_images
from stages.shared.progress import EPOCH_PATTERN
from tests.conftest import dvc, run
from tests.pipeline.conftest import lock_outs, run_flow, stale

pytestmark = pytest.mark.slow

STAGES = {
    "validate",
    "prepare",
    "train",
    "prune@ft-round0",
    "prune@lrr-round0",
    "retrain@ft-round0",
    "retrain@lrr-round0",
    "control@reinit-round0",
    "export@ft-round0",
    "export@lrr-round0",
    "sweep@ft",
    "sweep@lrr",
    "evaluate",
    "report",
}


def test_every_stage_runs_once_and_dvc_status_is_clean(flowed):
    project, summary, _, _ = flowed
    assert set(summary.stages) == STAGES
    assert {run.outcome for run in summary.stages.values()} == {"ran"}
    assert stale(project) == set()
    assert set(lock_outs(project)) == STAGES


def test_outputs_and_metrics_are_bit_identical_to_dvc_repro(flowed):
    project, _, reference, _ = flowed
    assert (project / "results/metrics.json").read_bytes() == (reference / "results/metrics.json").read_bytes()
    assert lock_outs(project) == lock_outs(reference), "every output hash as under dvc repro"


def test_independent_branches_run_at_the_same_time(flowed):
    """As Prefect's server recorded the stage tasks: the two prune stages overlap."""
    _, _, _, spans = flowed
    (ft_start, ft_end), (lrr_start, lrr_end) = spans["prune@ft-round0"], spans["prune@lrr-round0"]
    assert max(ft_start, lrr_start) < min(ft_end, lrr_end)


def test_a_stage_log_shows_its_epochs_while_it_runs_and_a_progress_artifact_follows_them(flowed):
    """The train stage's task log has an epoch line per seed and epoch, each its own record,
    logged before DVC recorded the finished stage in dvc.lock (so while the stage ran)."""
    _, _, _, spans = flowed
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["train"])))
        train = next(r for r in runs if r.start_time.timestamp() == spans["train"][0])  # this flow run's
        logs = client.read_logs(
            log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[train.id])), sort=LogSort.TIMESTAMP_ASC
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(task_run_id=ArtifactFilterTaskRunId(any_=[train.id]))
        )
    epochs = [log for log in logs if EPOCH_PATTERN.search(log.message)]
    assert len(epochs) == 2 * 4, "flow_params: 2 seeds of 4 epochs"
    locked = next(log for log in logs if "lock file 'dvc.lock'" in log.message)
    assert epochs[-1].timestamp < locked.timestamp < train.end_time
    assert [(a.type, a.data) for a in artifacts] == [("progress", 100.0)]


def test_results_artifact_has_every_strategy_and_round(flowed):
    project, _, _, _ = flowed
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[TABLE_KEY])))
        reports = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[REPORT_KEY])))
    assert artifacts and tables and reports
    report = (project / "reports/report.md").read_text()
    shown = reports[-1].data
    assert shown == with_embedded_images(report, project / "reports"), "the report's tables, as the UI shows them"
    assert "| round | sparsity | ft | lrr |" in shown
    figures = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", shown)
    assert len(figures) == len(re.findall(r"!\[", report)) >= 2
    for uri, name in zip(figures, re.findall(r"!\[[^\]]*\]\(([^)]*)\)", report), strict=True):
        prefix = "data:image/png;base64,"
        assert uri.startswith(prefix), f"{name} is still a link the UI cannot load"
        assert base64.b64decode(uri.removeprefix(prefix)) == (project / "reports" / name).read_bytes()
    text = artifacts[-1].data
    metrics = json.loads((project / "results/metrics.json").read_text())
    header = next(line for line in text.splitlines() if line.startswith("|  |"))
    columns = {cell.strip() for cell in header.split("|")}
    assert {"accuracy", "accuracy.round0", "safe_sparsity"} <= columns, "results/headline.json, the DVC metric"
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {"dense", "ft", "lrr", "reinit"}, "a row per strategy (the control too)"
    assert f"{metrics['lrr']['round0']['accuracy']:.4g}" in rows["lrr"]


def test_second_run_starts_no_stage(prefect_server, flowed):
    """Run as `python -m pipeline` runs it: the plan resolved before the flow, which takes it as it is."""
    project, _, _, _ = flowed
    state = run_plan(plan=plan_run(RunOptions(), project), return_state=True)
    summary = state.result(raise_on_failure=False)
    assert state.is_completed(), summary
    assert {run.outcome for run in summary.stages.values()} == {"up to date"}
    assert stale(project) == set()


def test_overrides_run_as_an_experiment_and_leave_the_workspace_as_committed(prefect_server, flowed):
    project, _, _, _ = flowed
    params_before = (project / "params.yaml").read_bytes()
    metrics_before = (project / "results/metrics.json").read_bytes()
    state, summary = run_flow(project, overrides={"strategies.lrr.budget": 3}, experiment="lrr-budget-3")
    assert state.is_completed(), summary
    ran = {name for name, run in summary.stages.items() if run.outcome != "up to date"}
    # lrr's stages (its prune stage reads its `pruning` setting, its sweep its whole entry)
    lrr = {"prune@lrr-round0", "retrain@lrr-round0", "export@lrr-round0", "sweep@lrr"}
    assert ran == {"validate", *lrr, "evaluate", "report"}
    assert summary.experiment == "lrr-budget-3"
    # recorded: dvc exp show lists it with its parameter, dvc metrics diff compares it with HEAD
    shown = json.loads(dvc("exp", "show", "--json", cwd=project).stdout)
    budgets = {
        experiment["name"]: rev["data"]["params"]["params.yaml"]["data"]["strategies"]["lrr"]["budget"]
        for commit in shown
        for experiment in commit.get("experiments") or []
        for rev in experiment["revs"]
    }
    assert budgets["lrr-budget-3"] == 3
    diff = json.loads(dvc("metrics", "diff", "HEAD", "lrr-budget-3", "--json", cwd=project).stdout)
    assert diff["results/headline.json"] and {key.split(".")[0] for key in diff["results/headline.json"]} == {"lrr"}
    # and the workspace is as committed: same params and metrics, nothing modified, nothing stale
    assert (project / "params.yaml").read_bytes() == params_before
    assert (project / "results/metrics.json").read_bytes() == metrics_before
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    assert stale(project) == set()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategies": ["ft", "magic"]}, "strategies: unknown strategy 'magic'"),
        ({"overrides": {"strategies.lrr.budgett": 3}}, "overrides: unknown params.yaml key 'strategies.lrr.budgett'"),
        ({"overrides": {"train.epochs": 0}}, "overrides: params.yaml: train.epochs"),
    ],
)
def test_bad_options_fail_in_one_line_before_touching_anything(prefect_server, flowed, options, message):
    project, _, _, _ = flowed
    lock_before = (project / "dvc.lock").read_bytes()
    state, error = run_flow(project, **options)
    assert state.is_failed()
    assert message in str(error) and "\n" not in str(error)
    assert (project / "dvc.lock").read_bytes() == lock_before
    assert run(["git", "status", "--porcelain"], project).stdout == ""


def test_overrides_need_a_committed_workspace(prefect_server, flowed):
    project, _, _, _ = flowed
    path = project / "stages/report.py"
    original = path.read_text()
    path.write_text(original + "\n")
    try:
        state, error = run_flow(project, overrides={"strategies.lrr.budget": 3})
        assert state.is_failed()
        assert "stages/report.py" in str(error) and "commit or stash" in str(error)
        assert (project / "params.yaml").read_text() == run(["git", "show", "HEAD:params.yaml"], project).stdout
    finally:
        path.write_text(original)
