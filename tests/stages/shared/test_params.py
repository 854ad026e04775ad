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


def test_an_iteration_budget_whose_rewind_step_is_kept_validates(tmp_path):
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["strategies"]["wr"]["budget"] = "30it"
    params["train"]["rewind_iterations"] = [850]
    params["sweep"]["budgets"] = [10, "44it"]  # 44 steps: two whole epochs back, an epoch's end
    loaded = load_params(write(tmp_path, params))
    assert str(loaded.strategy("wr").budget) == "30it"


def test_the_shipped_params_validate():
    from tests.conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    assert params.compare == ["ft", "wr", "lrr", "random", "none"]
    assert params.controls.strategies == ["reinit"] and params.masks_strategy("reinit") == "lrr"
    assert params.retrained == ["ft", "wr", "lrr", "random", "none", "reinit"]
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
            "strategies.ft.budget: a budget is an epoch count (20) or iterations (500it) (got -1)",
        ),
        (lambda p: p["prune"].update(fraction=1.5), "prune.fraction: must be < 1"),
        (lambda p: p["prune"].update(fraction=0), "prune.fraction: must be > 0"),
        (lambda p: p["rounds"][2].update(prev="round-0"), "rounds.2.prev: is 'round-0', expected 'round-1'"),
        (lambda p: p["rounds"][3].update(id=7), "rounds.3.id: is 7, expected 3"),
        (lambda p: p["model"].update(name="resnet9000"), "model.name: unknown model 'resnet9000'"),
        (
            lambda p: p["model"].update(name="vgg16"),
            "model.name: vgg16 pools 16-fold and needs inputs of at least 16x16",
        ),
        (lambda p: p["data"].update(name="imagenet"), "data.name: unknown dataset 'imagenet'"),
        (lambda p: p["train"].update(epochs="forty"), "train.epochs: Input should be a valid integer"),
        (lambda p: p["train"].update(lr=[0.1]), "train.lr: Input should be a valid number"),
        (lambda p: p["train"].update(milestones=[20, 50]), "train.milestones: 50 is not below train.epochs"),
        (lambda p: p["train"].update(learning_rate=0.1), "train.learning_rate: unknown key"),
        (lambda p: p["train"].update(threads=0), "train.threads: must be >= 1"),
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
        # accepted once, then crashing a stage with a traceback:
        (lambda p: p["data"].update(split_seed=2**32), "data.split_seed: must be <= 4294967295"),
        (lambda p: p.update(seeds=[2**64]), "seeds.0: must be <= 4294967295"),
        (lambda p: p["data"].update(test_fraction=0.001), "data.test_fraction: a test fraction of 0.001 leaves 2 test"),
        (lambda p: p["data"].update(test_fraction=0.999), "data.test_fraction: a test fraction of 0.999 leaves 1796"),
        (lambda p: p["prune"].update(exclude=["*"]), "prune.exclude: excludes every prunable weight"),
        (lambda p: p["prune"].update(exclude=["1.weigth"]), "prune.exclude: '1.weigth' matches no prunable weight"),
        (lambda p: p["strategies"].update(dense=p["strategies"]["ft"]), "strategies.dense: the name is taken"),
        (lambda p: p["sweep"].update(sparsities=[]), "sweep.sparsities: List should have at least 1 item"),
        (lambda p: p["train"].update(lr=1e308), "train.lr: must be <= 3.40282e+38"),
        (lambda p: p["train"].update(lr=float("inf")), "train.lr: Input should be a finite number"),
        (lambda p: p["train"].update(momentum=float("nan")), "train.momentum: Input should be a finite number"),
        (lambda p: p["compare"].append("reinit"), "compare: reinit has weights: reinit; a fresh-weights control"),
        # time in iterations: digits' 1,347 training images at batch 64 are 22 steps an epoch, 880 a run
        (lambda p: p["strategies"]["ft"].update(budget="881it"), "strategies.ft.budget: 881it is more than the dense"),
        (
            lambda p: p["strategies"]["wr"].update(budget="30it"),
            "strategies.wr.budget: 30it rewinds to step 850, which the dense run keeps only if train.rewind_iterations",
        ),
        (
            lambda p: p["strategies"]["ft"].update(budget="30"),
            "strategies.ft.budget: a budget is an epoch count (20) or iterations (500it) (got '30')",
        ),
        (lambda p: p["sweep"].update(budgets=[10, "7it"]), "sweep.budgets: 7it rewinds to step 873"),
        (lambda p: p["train"].update(rewind_iterations=[880]), "train.rewind_iterations: 880 is not inside"),
        (lambda p: p["train"].update(rewind_iterations=[5, 5]), "train.rewind_iterations: a step is listed twice"),
        (lambda p: p["train"].update(schedule="cosine"), "train.milestones: only the step schedule has milestones"),
        (
            lambda p: p["train"].update(schedule="onecycle", milestones=[], warmup_epochs=2),
            "train.warmup_epochs: one-cycle rises from lr/25 by itself",
        ),
        (lambda p: p["train"].update(schedule="linear"), "train.schedule: Input should be 'step', 'cosine'"),
        (
            lambda p: p["data"].update(name="plugins.nope:load"),
            "data.name: 'plugins.nope:load': no module named 'plugins.nope'",
        ),
        (
            lambda p: p["data"].update(name="plugins.nope:load"),
            "data.input_shape: a dataset of your own (plugins.nope:load) must declare it",
        ),
        (lambda p: p["data"].update(num_classes=10), "data.num_classes: digits is built in and its shape known"),
        (lambda p: p["model"].update(name="rewind.models:nowhere"), "model.name: 'rewind.models:nowhere': module"),
        (lambda p: p["model"].update(name="rewind.models:MODELS"), "model.name: 'rewind.models:MODELS': MODELS is a"),
        (lambda p: p["controls"].update(masks_from="magic"), "controls.masks_from: 'magic' is not a compared strategy"),
        (lambda p: p["controls"]["strategies"].append("magic"), "controls.strategies: unknown strategy 'magic'"),
        (lambda p: p["controls"]["strategies"].append("ft"), "controls.strategies: ft is compared too"),
        (lambda p: p["controls"]["strategies"].append("reinit"), "controls.strategies: a strategy is listed twice"),
        (lambda p: p.pop("controls"), "controls: missing key"),
        (
            lambda p: p["strategies"]["reinit"].update(pruning="random"),
            "strategies.reinit.pruning: reinit is a control: it prunes nothing",
        ),
        (
            lambda p: p["strategies"]["lrr"].update(lr=0.01),
            "strategies.lrr.lr: a stated rate is for rates: constant; replayed rates are the schedule's",
        ),
        (lambda p: p["strategies"]["ft"].update(lr=0.0), "strategies.ft.lr: must be > 0"),
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


def test_a_key_given_twice_is_refused_naming_it(tmp_path):
    text = (tiny_params_text := yaml.safe_dump(tiny_params())).replace("  lr: 0.1\n", "  lr: 0.1\n  lr: 0.5\n")
    assert text != tiny_params_text
    assert "not valid YAML at line" in (message := error_for(tmp_path, text)) and "key 'lr' given twice" in message


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("seeds: [0]\n".encode("utf-16"), "not UTF-8 text"),
        ("seeds: [0] # café\n".encode("latin-1"), "not UTF-8 text (byte 0xe9"),
        (bytes(range(256)), "not UTF-8 text"),
        (("a: " * 200 + "1\n").encode(), "not valid YAML"),
        (("[" * 5000 + "]" * 5000).encode(), "nested too deeply"),
    ],
)
def test_unreadable_documents_are_one_line(tmp_path, payload, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(payload)
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_or_fifo_as_params_is_one_line(tmp_path):
    import os

    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for name in ("folder", "fifo"):
        with pytest.raises(ParamsError, match=f"{name}: not a regular file"):
            load_params(tmp_path / name)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ParamsError, match="params.yaml: file not found"):
        load_params(tmp_path / "params.yaml")
    assert "expected a mapping" in error_for(tmp_path, "- just\n- a list\n")


def cosine(tmp_path, **strategies):
    """The default under a cosine schedule of 30 epochs with 2 of warmup, `strategies` added."""
    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(schedule="cosine", epochs=30, warmup_epochs=2, milestones=[])
    params["strategies"]["reinit"]["budget"] = 30
    params["sweep"]["budgets"] = [10, 20]
    params["strategies"].update(strategies)
    return load_params(write(tmp_path, params))


def test_a_constant_rate_too_small_to_train_is_warned_about_with_its_remedy(tmp_path):
    """Fine-tuning at a cosine's last rate (5.7e-7 on digits) cannot move the weights: one warning,
    naming the key, the rate and a strategy at a stated rate that would train; `none` (budget 0)
    retrains nothing by design and lrr replays the cosine's usable tail, so neither is flagged."""
    from stages.shared.params import rate_warnings

    (line,) = rate_warnings(cosine(tmp_path))
    assert line.startswith("strategies.ft: its largest rate, 5.7e-07, is below 0.001 of train.lr (0.1)"), line
    assert "`ft_lr: {weights: final, rates: constant, budget: 20, lr: 0.001}`" in line
    remedied = cosine(tmp_path, ft={"weights": "final", "rates": "constant", "budget": 20, "lr": 0.001})
    assert rate_warnings(remedied) == [] and remedied.strategy("ft").rate == 0.001


def test_the_shipped_params_warn_about_nothing():
    from stages.shared.params import rate_warnings
    from tests.conftest import ROOT

    assert rate_warnings(load_params(ROOT / "params.yaml")) == []
