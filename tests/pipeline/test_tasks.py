"""pipeline.tasks with real DVC on a real Prefect server: a stage task's final state says what DVC
did (ran, restored from its run-cache, nothing: up to date), as the server records it; what the
task's log and progress artifact make of the lines a stage prints."""

import logging
from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.states import State

from pipeline.tasks import StageLog, progress_key, repro_stage
from stages.shared.progress import EPOCH_LINE
from tests.pipeline.conftest import make_dvc_repo, task_runs

STAMP = "2026-12-04 14:30:23,444 "  # how a stage's logging starts each line (stages.shared.entry)

DVC_YAML = """\
stages:
  copy:
    cmd: cp in.txt out.txt
    deps: [in.txt]
    outs: [out.txt]
"""
# (in.txt, the flow's `check`) before each run of the stage; DVC's verdict; the task's state name
RUNS = [
    ("a", True, "ran", "Completed"),
    ("b", True, "ran", "Completed"),
    ("a", True, "restored", "Cached"),  # a's outputs are in DVC's run-cache since the first run
    ("a", True, "up to date", "Skipped"),  # DVC finds nothing changed
    ("a", False, "up to date", "Skipped"),  # the flow knows it from `dvc status`: DVC is not started
]


@flow(persist_result=False)
def copy_as_input_changes(project: str) -> list[State]:
    states = []
    for text, check, _, _ in RUNS:
        (Path(project) / "in.txt").write_text(text)
        states.append(repro_stage(project, "copy", check, return_state=True))
    return states


def test_a_stage_task_state_names_what_dvc_did(prefect_server, tmp_path):
    repo = make_dvc_repo(tmp_path / "repo", DVC_YAML)
    state = copy_as_input_changes(str(repo), return_state=True)
    states = state.result()
    assert [s.result().outcome for s in states] == [outcome for _, _, outcome, _ in RUNS]
    recorded = sorted(task_runs(state.state_details.flow_run_id, len(RUNS)).values(), key=lambda run: run.start_time)
    assert [run.state.name for run in recorded] == [name for *_, name in RUNS]
    assert all(run.state.is_completed() for run in recorded)
    assert (repo / "out.txt").read_text() == "a"


@flow(persist_result=False)
def print_to_stage_log(stage: str, lines: list[str]) -> None:
    """The lines as a stage task hands them to its StageLog (here logging to `test.stage`), in a run."""
    log = StageLog(stage, logging.LoggerAdapter(logging.getLogger("test.stage"), {}))
    for line in lines:
        log.line(line)
    log.done()


def progress_artifacts(stage: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[progress_key(stage)])))


def test_a_stage_line_loses_its_timestamp_and_epoch_lines_but_each_quarter_go_to_debug(prefect_server, caplog):
    """2 runs of 3 epochs: the lines at 33, 50, 83 and 100% pass a quarter of the stage; a progress
    artifact follows them."""
    epochs = [
        EPOCH_LINE.format(label="seed 0", epoch=e, epochs=3, run=r, runs=2, lr=0.1, loss=1.0, accuracy=0.5)
        for r in (1, 2)
        for e in (1, 2, 3)
    ]
    printed = ["rewind: digits: 1347 train", *("rewind: " + line for line in epochs)]
    with caplog.at_level(logging.DEBUG, logger="test.stage"):
        print_to_stage_log("unit-train", [STAMP + line for line in printed] + ["error: train.epochs: must be > 0"])
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "test.stage"] == [
        (logging.INFO, printed[0]),
        *[(logging.INFO if n in (2, 3, 5, 6) else logging.DEBUG, printed[n]) for n in range(1, 7)],
        (logging.ERROR, "error: train.epochs: must be > 0"),
    ]
    [artifact] = progress_artifacts("unit-train")
    assert artifact.data == 100.0 and "training runs" in artifact.description


def test_a_stage_that_prints_no_epoch_line_gets_no_progress_artifact(prefect_server):
    print_to_stage_log("unit-prune", [STAMP + "rewind: round 0: 50.00% sparsity", "Updating lock file 'dvc.lock'"])
    assert progress_artifacts("unit-prune") == []
