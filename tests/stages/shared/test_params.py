import pytest
import yaml

from stages.shared.params import ParamsError, load_params
from tests.conftest import tiny_params


def write(tmp_path, params) -> object:
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params))
    return path


def error_for(tmp_path, params) -> str:
    with pytest.raises(ParamsError) as caught:
        load_params(write(tmp_path, params))
    message = str(caught.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_the_shipped_params_validate():
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    assert params.compare == ["ft", "wr", "lrr", "reinit", "random", "none"]
    assert params.pruning_method("random") == "random" and params.pruning_method("lrr") == "magnitude"
    assert (1 - params.prune.fraction) ** len(params.rounds) < 0.02, "default must reach 98% sparsity"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["compare"].append("magic"), "compare: unknown strategy 'magic'"),
        (
            lambda p: p["strategies"]["ft"].update(budget=99),
            "strategies.ft.budget: 99 is larger than train.epochs (40)",
        ),
        (
            lambda p: p["strategies"]["ft"].update(budget=-1),
            "strategies.ft.budget: Input should be greater than or equal to 0",
        ),
        (lambda p: p["prune"].update(fraction=1.5), "prune.fraction: Input should be less than 1"),
        (lambda p: p["prune"].update(fraction=0), "prune.fraction: Input should be greater than 0"),
        (lambda p: p["rounds"][2].update(prev="round-0"), "rounds.2.prev: is 'round-0', expected 'round-1'"),
        (lambda p: p["rounds"][3].update(id=7), "rounds.3.id: is 7, expected 3"),
        (lambda p: p["model"].update(name="resnet9000"), "model.name: unknown model 'resnet9000'"),
        (lambda p: p["data"].update(name="imagenet"), "data.name: unknown dataset 'imagenet'"),
        (lambda p: p["train"].update(epochs="forty"), "train.epochs: Input should be a valid integer"),
        (lambda p: p["train"].update(lr=[0.1]), "train.lr: Input should be a valid number"),
        (lambda p: p["train"].update(milestones=[20, 50]), "train.milestones: 50 is not below train.epochs"),
        (lambda p: p["train"].update(learning_rate=0.1), "train.learning_rate: unknown key"),
        (lambda p: p["train"].update(threads=0), "train.threads: Input should be greater than or equal to 1"),
        (lambda p: p["train"].pop("threads"), "train.threads: missing key"),
        (lambda p: p.pop("seeds"), "seeds: missing key"),
        (lambda p: p.update(seeds=[0, 0]), "seeds: a seed is listed twice"),
        (lambda p: p["sweep"].update(budgets=[50]), "sweep.budgets: 50 is larger than train.epochs"),
        (lambda p: p["sweep"].update(strategies=["magic"]), "sweep.strategies: unknown strategy 'magic'"),
        (
            lambda p: p["strategies"]["ft"].update(weights="best"),
            "strategies.ft.weights: Input should be 'final', 'rewind' or 'reinit'",
        ),
        (
            lambda p: p["prune"].update(schedule="oneshot", sparsities=[0.5, 0.9]),
            "prune.sparsities: 2 targets for 6 rounds",
        ),
        (lambda p: p["prune"].update(method="l2"), "prune.method: Input should be 'magnitude' or 'random'"),
    ],
)
def test_bad_values_get_one_line_naming_the_key(tmp_path, change, expected):
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(params)
    message = error_for(tmp_path, params)
    assert expected in message
    assert message.startswith(str(tmp_path / "params.yaml"))


def test_oneshot_rounds_all_start_from_dense(tmp_path):
    params = tiny_params()
    params["prune"].update(schedule="oneshot", sparsities=[0.5, 0.9])
    assert "rounds.1.prev: is 'round-0', expected '../dense' for oneshot" in error_for(tmp_path, params)
    params["rounds"][1]["prev"] = "../dense"
    assert load_params(write(tmp_path, params)).prune.schedule == "oneshot"


def test_malformed_yaml_names_the_line(tmp_path):
    assert "not valid YAML at line" in error_for(tmp_path, "seed: 0\ntrain: {a: 1\nmodel: x\n")


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ParamsError, match="params.yaml: file not found"):
        load_params(tmp_path / "params.yaml")
    assert "expected a mapping" in error_for(tmp_path, "- just\n- a list\n")
