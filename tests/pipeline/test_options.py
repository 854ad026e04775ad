"""Flow options against params.yaml: overrides, strategies, one-line errors; no Prefect server needed."""

import os
import subprocess
import sys

import pytest
import yaml

from pipeline import PipelineError
from pipeline.options import RunOptions, apply_changes, resolve_changes, resolve_run, stages_at_once, write_changes
from tests.conftest import ROOT, project_env, tiny_params


@pytest.fixture
def params() -> dict:
    return tiny_params()


def test_no_options_change_nothing(params):
    assert resolve_changes(RunOptions(), params) == {}


def test_overrides_and_strategies_become_changes_only_where_they_differ(params):
    options = RunOptions(
        strategies=["lrr", "ft"],
        overrides={"strategies.lrr.budget": 3, "train.epochs": params["train"]["epochs"], "rounds.0.prev": "../dense"},
    )
    changes = resolve_changes(options, params)
    assert changes == {"strategies.lrr.budget": 3, "compare": ["lrr", "ft"]}
    merged = apply_changes(params, changes)
    assert merged["strategies"]["lrr"]["budget"] == 3 and merged["compare"] == ["lrr", "ft"]
    assert params["strategies"]["lrr"]["budget"] != 3, "the input is not modified"


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
def test_bad_options_are_one_line_naming_the_key(params, options, message):
    with pytest.raises(PipelineError) as caught:
        resolve_changes(RunOptions(**options), params)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_resolve_run_checks_the_merged_params_as_the_stages_do(tmp_path, params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changes, effective = resolve_run(RunOptions(overrides={"train.lr": 0.05}), tmp_path)
    assert changes == {"train.lr": 0.05} and effective == apply_changes(params, changes)
    with pytest.raises(PipelineError) as caught:
        resolve_run(RunOptions(overrides={"train.lr": -1}), tmp_path)
    assert str(caught.value).startswith("overrides: params.yaml: train.lr: ") and "\n" not in str(caught.value)


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
