"""The flow under a real (temporary) Prefect server on a tiny config: the same stages, outputs and
metrics as `dvc repro`, a results artifact, experiments for overrides, one-line errors."""

import base64
import json
import logging
import re

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

from bench.repro import lock_outs
from pipeline.flow import run_plan
from pipeline.options import RunOptions, plan_run
from pipeline.results import ARTIFACT_KEY, REPORT_KEY, TABLE_KEY, with_embedded_images
from stages.shared.progress import EPOCH_PATTERN, stage_fraction
from tests.conftest import dvc, run
from tests.pipeline.conftest import run_flow, run_logs, stale, task_runs

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
    "export",
    "sweep@ft",
    "sweep@lrr",
    "evaluate",
    "report",
}


def test_every_stage_runs_once_and_dvc_status_is_clean(flowed):
    project, summary = flowed.project, flowed.summary
    assert set(summary.stages) == STAGES
    assert {run.outcome for run in summary.stages.values()} == {"ran"}
    assert stale(project) == set()
    assert set(lock_outs(project)) == STAGES


def test_outputs_and_metrics_are_bit_identical_to_dvc_repro(flowed):
    project, reference = flowed.project, flowed.reference
    assert (project / "results/metrics.json").read_bytes() == (reference / "results/metrics.json").read_bytes()
    assert lock_outs(project) == lock_outs(reference), "every output hash as under dvc repro"


def test_independent_branches_run_at_the_same_time(flowed):
    """As Prefect's server recorded the stage tasks: the two prune stages overlap."""
    spans = flowed.spans
    (ft_start, ft_end), (lrr_start, lrr_end) = spans["prune@ft-round0"], spans["prune@lrr-round0"]
    assert max(ft_start, lrr_start) < min(ft_end, lrr_end)


def test_a_stage_log_shows_each_quarter_of_its_training_while_it_runs(flowed):
    """Of the train stage's eight epoch lines (2 seeds of 4 epochs), its task log has at INFO the
    four that take it past 25, 50, 75 and 100%, each its own record, logged before DVC recorded the
    finished stage in dvc.lock (so while the stage ran)."""
    train = task_runs(flowed.flow_run_id, len(STAGES))["train"]
    logs = [log for log in run_logs(flowed.flow_run_id) if log.task_run_id == train.id]
    epochs = [log for log in logs if EPOCH_PATTERN.search(log.message)]
    assert [stage_fraction(log.message) for log in epochs] == [0.25, 0.5, 0.75, 1.0]
    assert {log.level for log in epochs} == {logging.INFO}
    locked = next(log for log in logs if "lock file 'dvc.lock'" in log.message)
    assert epochs[-1].timestamp < locked.timestamp < train.end_time


def test_stage_logs_have_no_dvc_hints_and_one_timestamp_a_line(flowed):
    """What DVC and the stages printed, as the server holds it: no `git add dvc.lock` / autostage /
    `dvc push` advice, no stage timestamp inside a line (Prefect stamps each), few lines a stage."""
    tasks = task_runs(flowed.flow_run_id, len(STAGES))
    logs = run_logs(flowed.flow_run_id)
    lines = {name: [log.message for log in logs if log.task_run_id == run.id] for name, run in tasks.items()}
    every = [line for stage in lines.values() for line in stage]
    assert [line for line in every if re.search(r"git add|autostage|dvc push", line)] == []
    assert [line for line in every if re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)] == []
    # DVC's "Running stage", its command, its lock file written (validate: created, then updated), Prefect's line
    assert [re.sub(r"\d+\.\d s", "N s", line) for line in lines["validate"]] == [
        "Running stage 'validate':",
        "> python -m stages.validate",
        "Generating lock file 'dvc.lock'",
        "Updating lock file 'dvc.lock'",
        "Finished in state Completed('ran in N s')",
    ]
    train = [line for line in lines["train"] if not EPOCH_PATTERN.search(line)]
    assert len(train) == 6 and sum(line.startswith("rewind: dense seed ") for line in train) == 2, train
    assert len(lines["train"]) == len(train) + 4, "four epoch lines of eight"


def test_only_stages_that_train_have_progress_artifacts(flowed):
    """A progress artifact per stage that trains, at 100 once it ended; none for the other stages."""
    names = {run.id: name for name, run in task_runs(flowed.flow_run_id, len(STAGES)).items()}
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flowed.flow_run_id]),
                type=ArtifactFilterType(any_=["progress"]),
            )
        )
    progress = {names[artifact.task_run_id]: artifact for artifact in artifacts}
    trained = {"train", "retrain@ft-round0", "retrain@lrr-round0", "control@reinit-round0", "sweep@ft", "sweep@lrr"}
    assert set(progress) == trained
    assert {artifact.data for artifact in artifacts} == {100.0}
    assert all("training runs" in artifact.description for artifact in artifacts)


def test_results_artifact_is_a_narrow_table_of_every_strategy(flowed):
    project = flowed.project
    with get_client(sync_client=True) as client:
        artifacts = {
            artifact.key: artifact
            for artifact in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flowed.flow_run_id]))
            )
        }
    report = (project / "reports/report.md").read_text()
    shown = artifacts[REPORT_KEY].data
    assert shown == with_embedded_images(report, project / "reports"), "the report's tables, as the UI shows them"
    assert "| round | sparsity | ft | lrr |" in shown
    figures = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", shown)
    assert len(figures) == len(re.findall(r"!\[", report)) >= 2
    for uri, name in zip(figures, re.findall(r"!\[[^\]]*\]\(([^)]*)\)", report), strict=True):
        prefix = "data:image/png;base64,"
        assert uri.startswith(prefix), f"{name} is still a link the UI cannot load"
        assert base64.b64decode(uri.removeprefix(prefix)) == (project / "reports" / name).read_bytes()
    text = artifacts[ARTIFACT_KEY].data
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert {line.count("|") - 1 for line in table} == {3}, "three columns: strategy, accuracy, safe sparsity"
    assert "in parentheses" in text.lower() and "brackets" not in text
    rows = {line.split("|")[1].strip(" `"): line for line in table[2:]}
    assert set(rows) == {"dense", "ft", "lrr", "reinit"}, "a row per strategy (the control too); no verdict without wr"
    lrr = json.loads((project / "results/metrics.json").read_text())["lrr"]["round0"]
    assert f"| {100 * lrr['accuracy']:.2f} ± {100 * lrr['accuracy_std']:.2f} |" in rows["lrr"]
    data = json.loads(artifacts[TABLE_KEY].data)
    assert [row["strategy"] for row in data] == ["dense", "ft", "lrr", "reinit"]
    assert {len(row) for row in data} == {5}


def test_second_run_starts_no_stage_and_its_tasks_say_skipped(prefect_server, flowed):
    """Run as `python -m pipeline` runs it: the plan resolved before the flow, which takes it as it is.
    Every stage task of the first run says Completed, of this one Skipped; each run's tally says so."""
    project = flowed.project
    state = run_plan(plan=plan_run(RunOptions(), project), return_state=True)
    summary = state.result(raise_on_failure=False)
    assert state.is_completed(), summary
    assert {run.outcome for run in summary.stages.values()} == {"up to date"}
    assert stale(project) == set()
    second = state.state_details.flow_run_id
    assert {name: run.state.name for name, run in task_runs(second, len(STAGES)).items()} == dict.fromkeys(
        STAGES, "Skipped"
    )
    assert {run.state.name for run in task_runs(flowed.flow_run_id, len(STAGES)).values()} == {"Completed"}
    tally = "13 stages: {} ran, 0 cached (restored from DVC's run-cache), {} skipped (up to date)"
    assert tally.format(13, 0) in [log.message for log in run_logs(flowed.flow_run_id)]
    assert tally.format(0, 13) in [log.message for log in run_logs(second)]


def test_overrides_run_as_an_experiment_and_leave_the_workspace_as_committed(prefect_server, flowed):
    project = flowed.project
    params_before = (project / "params.yaml").read_bytes()
    metrics_before = (project / "results/metrics.json").read_bytes()
    state, summary = run_flow(project, overrides={"strategies.lrr.budget": 3}, experiment="lrr-budget-3")
    assert state.is_completed(), summary
    ran = {name for name, run in summary.stages.items() if run.outcome != "up to date"}
    # lrr's stages (its prune stage reads its `pruning` setting, its sweep its whole entry)
    lrr = {"prune@lrr-round0", "retrain@lrr-round0", "export", "sweep@lrr"}
    assert ran == {"validate", *lrr, "evaluate", "report"}
    states = task_runs(state.state_details.flow_run_id, len(STAGES))
    assert {name: run.state.name for name, run in states.items()} == {
        name: "Completed" if name in ran else "Skipped" for name in STAGES
    }
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
    project = flowed.project
    lock_before = (project / "dvc.lock").read_bytes()
    state, error = run_flow(project, **options)
    assert state.is_failed()
    assert message in str(error) and "\n" not in str(error)
    assert (project / "dvc.lock").read_bytes() == lock_before
    assert run(["git", "status", "--porcelain"], project).stdout == ""


def test_overrides_need_a_committed_workspace(prefect_server, flowed):
    project = flowed.project
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
