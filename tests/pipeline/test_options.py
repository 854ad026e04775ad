"""Flow options against params.yaml: overrides, strategies, one-line errors; no Prefect server needed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import PipelineError
from pipeline.options import RunOptions, plan_run, stages_at_once, write_changes
from tests.conftest import ROOT, project_env, tiny_params


@pytest.fixture
def params() -> dict:
    return tiny_params()


@pytest.fixture
def project(tmp_path, params) -> Path:
    """A folder holding just params.yaml (tiny_params): all plan_run reads."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def test_no_options_change_nothing(project, params):
    plan = plan_run(RunOptions(), project)
    assert plan.changes == {} and plan.params == params and plan.project == str(project.resolve())


def test_overrides_and_strategies_become_changes_only_where_they_differ(project, params):
    options = RunOptions(
        strategies=["lrr", "ft"],
        overrides={"strategies.lrr.budget": 3, "train.epochs": params["train"]["epochs"], "rounds.0.prev": "../dense"},
    )
    plan = plan_run(options, project)
    assert plan.changes == {"strategies.lrr.budget": 3, "compare": ["lrr", "ft"]}
    assert plan.params["strategies"]["lrr"]["budget"] == 3 and plan.params["compare"] == ["lrr", "ft"]
    assert yaml.safe_load((project / "params.yaml").read_text()) == params, "params.yaml is not written"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategies": ["ft", "magic"]}, "strategies: unknown strategy 'magic'; defined in params.yaml: ["),
        ({"strategies": []}, "strategies: expected a non-empty list"),
        ({"strategies": ["ft", "ft"]}, "strategies: a strategy is named twice"),
        ({"overrides": {"train.epoch": 3}}, "overrides: unknown params.yaml key 'train.epoch' (known here: "),
        ({"overrides": {"strategies.magic.budget": 3}}, "overrides: unknown params.yaml key 'strategies.magic'"),
        ({"overrides": {"rounds.7.prev": "x"}}, "overrides: unknown params.yaml key 'rounds.7' (a list of 2 items)"),
        ({"overrides": {"seeds.x": 1}}, "overrides: unknown params.yaml key 'seeds.x' (a list of 2 items)"),
        ({"strategies": ["ft"], "overrides": {"compare": ["ft"]}}, "not both"),
        ({"experiment": "named"}, "experiment: a name is given but no override changes params.yaml"),
    ],
)
def test_bad_options_are_one_line_naming_the_key(project, options, message):
    with pytest.raises(PipelineError) as caught:
        plan_run(RunOptions(**options), project)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_plan_run_checks_the_merged_params_as_the_stages_do(project):
    plan = plan_run(RunOptions(overrides={"train.lr": 0.05}), project)
    assert plan.changes == {"train.lr": 0.05} and plan.params["train"]["lr"] == 0.05
    with pytest.raises(PipelineError) as caught:
        plan_run(RunOptions(overrides={"train.lr": -1}), project)
    assert str(caught.value).startswith("overrides: params.yaml: train.lr: ") and "\n" not in str(caught.value)


def test_a_missing_params_yaml_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match=r"^params.yaml: cannot read: .*No such file"):
        plan_run(RunOptions(), tmp_path)


def test_options_model_refuses_unknown_fields_and_bad_values():
    with pytest.raises(ValueError, match="parallelizm"):
        RunOptions.model_validate({"parallelizm": 2})
    with pytest.raises(ValueError, match="parallelism"):
        RunOptions(parallelism=0)
    with pytest.raises(ValueError, match="experiment"):
        RunOptions(experiment="no spaces please")


CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("parallelism", "train", "expected"),
    [
        (5, {"device": "cuda"}, 5),  # given: taken as it is
        (None, {"device": "cpu", "threads": 1}, CORES + 1),  # a stage per core, one more
        (None, {"device": "cpu", "threads": None}, 2),  # a stage uses every core: one, and one more
        (None, {"device": "cpu", "threads": 2 * CORES}, 2),
        (None, {"device": "cuda", "threads": 1}, 2),
        (None, {"device": "auto"}, 2),
        (None, "not a mapping", 2),  # as `threads: null`; the validate stage will name the key
    ],
)
def test_stages_at_once_fills_the_cores_and_one_more(parallelism, train, expected):
    assert stages_at_once(RunOptions(parallelism=parallelism), {"train": train}) == expected


def test_written_overrides_keep_the_comments_of_params_yaml(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    comments = [line for line in (ROOT / "params.yaml").read_text().splitlines() if line.lstrip().startswith("#")]
    write_changes(tmp_path, {"train.lr": 0.05, "compare": ["ft", "lrr"]})
    text = (tmp_path / "params.yaml").read_text()
    assert yaml.safe_load(text)["train"]["lr"] == 0.05 and yaml.safe_load(text)["compare"] == ["ft", "lrr"]
    assert [line for line in text.splitlines() if line.lstrip().startswith("#")] == comments


def test_command_line_fails_fast_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--project", str(tmp_path), "--set", "train.epochz=3"],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: overrides: unknown params.yaml key 'train.epochz' (known here: "
        + ", ".join(tiny_params()["train"])
        + ")"
    ]
