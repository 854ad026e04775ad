"""stages.validate as DVC runs it: valid params pass, and params that will not measure what they
seem to (a fine-tuning whose rate cannot move the weights) pass with a warning line naming the key."""

import sys

from tests.conftest import make_project, run, tiny_params


def test_a_fine_tuning_that_cannot_train_passes_with_a_warning(tmp_path):
    params = tiny_params()
    params["train"].update(schedule="cosine", epochs=8, warmup_epochs=1, milestones=[])  # ends at 3e-4 of lr
    project = make_project(tmp_path / "p", params)
    result = run([sys.executable, "-m", "stages.validate"], project)
    warnings = [line for line in result.stderr.splitlines() if "cannot move the weights" in line]
    assert len(warnings) == 1 and "params.yaml: strategies.ft: its largest rate" in warnings[0], result.stderr
    assert (project / "results/params.ok").read_text() == "params.yaml passed validation\n"


def test_the_tiny_params_pass_without_a_warning(tmp_path):
    project = make_project(tmp_path / "p", tiny_params())
    result = run([sys.executable, "-m", "stages.validate"], project)
    assert "cannot move the weights" not in result.stderr and (project / "results/params.ok").exists()
