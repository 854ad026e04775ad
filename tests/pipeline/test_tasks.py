"""pipeline.tasks with real DVC on a real Prefect server: a stage task's final state says what DVC
did (ran, restored from its run-cache, nothing: up to date), as the server records it."""

from pathlib import Path

from prefect import flow
from prefect.states import State

from pipeline.tasks import repro_stage
from tests.pipeline.conftest import make_dvc_repo, task_runs

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
