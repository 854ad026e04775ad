"""Paper scale on a CPU: every preset validates, and ResNet-20 with filter pruning runs through
`dvc repro` on a tiny dataset written in CIFAR-10's published format."""

import json

import pytest
import torch
import yaml

from rewind.checkpoint import load_tensors
from rewind.models import build_model, prunable_names
from rewind.prune import full_masks
from rewind.slim import slimmed
from stages.shared.params import ParamsError, load_params
from tests.conftest import ROOT, dvc, make_project, tiny_params
from tests.rewind.test_data import write_cifar

PRESETS = sorted((ROOT / "presets").glob("*.yaml"))


def test_presets_exist_for_the_paper_networks():
    assert {p.stem for p in PRESETS} >= {"resnet20_cifar10", "resnet56_cifar10", "lenet300_mnist"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_validates_and_names_a_dataset_folder(path):
    params = load_params(path)
    assert params.data.name in ("cifar10", "mnist") and params.data.root
    assert params.train.device == "auto", "presets run on the GPU when there is one"
    assert params.train.augment == (params.data.name == "cifar10")
    shape = (3, 32, 32) if params.data.name == "cifar10" else (1, 28, 28)
    model = build_model(params.model.name, shape, 10, seed=0)
    pruned = full_masks(model, params.prune.exclude)
    assert pruned, "a preset prunes something"
    if params.prune.granularity == "weight" and params.model.name != "mlp":
        assert list(pruned) == prunable_names(model), "the paper's code prunes every layer of its CIFAR networks"


def test_filter_preset_prunes_the_first_conv_of_blocks_as_resnet_56_A():
    params = load_params(ROOT / "presets/resnet56_cifar10_filters.yaml")
    assert (params.prune.granularity, params.prune.scope, params.prune.fraction) == ("filter", "layer", 0.1)
    model = build_model("resnet56", (3, 32, 32), 10, seed=0)
    # l1_filter_pruning.resnet_56_A: conv_i for even i in 2..54 but 16, 20, 38, 54; conv_(2b+2) is block b's conv1.
    expected = {f"blocks.{(i - 2) // 2}.conv1.weight" for i in range(2, 55, 2) if i not in (16, 20, 38, 54)}
    assert set(full_masks(model, params.prune.exclude)) == expected


def tiny_cifar_params() -> dict:
    """ResNet-20, two dense epochs with augmentation, one round of filter pruning, two strategies."""
    params = tiny_params()
    params["data"].update(name="cifar10", root="raw/cifar-10-batches-py")
    params["model"]["name"] = "resnet20"
    params["train"].update(epochs=2, milestones=[1], batch_size=32, augment=True)
    params["prune"].update(granularity="filter", scope="layer", fraction=0.25, exclude=["conv.weight", "fc.weight"])
    for name in params["strategies"]:
        params["strategies"][name]["budget"] = min(params["strategies"][name]["budget"], 1)
    params["compare"] = ["ft", "lrr"]
    params["rounds"] = [{"id": 0, "prev": "../dense"}]
    if "seeds" in params:
        params["seeds"] = [0]
    if "sweep" in params:
        params["sweep"].update(strategies=["lrr"], sparsities=[0.5], budgets=[1])
    return params


@pytest.mark.slow
def test_resnet20_filter_pruning_on_tiny_cifar_runs_through_dvc_repro(tmp_path):
    path = make_project(tmp_path / "project", tiny_cifar_params())
    write_cifar(path / "raw/cifar-10-batches-py", per_batch=13, test=32)
    dvc("repro", cwd=path)
    metrics = json.loads((path / "results/metrics.json").read_text())
    assert {"dense", "ft", "lrr"} <= set(metrics)
    model = build_model("resnet20", (3, 32, 32), 10, seed=0)
    for strategy in ("ft", "lrr"):
        round_dir = path / "runs" / strategy / "round-0"
        mask_file = next(p for p in sorted(round_dir.rglob("*.safetensors")) if "mask" in str(p.relative_to(round_dir)))
        model_file = next(
            p for p in sorted(round_dir.rglob("*.safetensors")) if "model" in str(p.relative_to(round_dir))
        )
        masks, _ = load_tensors(mask_file)
        weights, _ = load_tensors(model_file)
        assert set(masks) == set(prunable_names(model)) - {"conv.weight", "fc.weight"}
        for name, mask in masks.items():
            per_filter = mask.flatten(1)
            removed = ~per_filter.any(1)
            assert (per_filter.all(1) | removed).all(), f"{strategy} {name}: filters are kept or removed whole"
            assert int(removed.sum()) == round(0.25 * mask.shape[0])
            assert torch.equal(weights[name][removed], torch.zeros_like(weights[name][removed]))
        # Accounting: the tables' sparsity covers the pruned layers, the whole network's is lower;
        # removing the dead filters leaves what rewind.slim counts on these very weights and masks
        # (the weights decide which dead filters' constants a convolution could do without).
        measured = metrics[strategy]["round0"]
        assert 0 < measured["network_sparsity"] < measured["sparsity"]
        model.load_state_dict(weights)
        expected = slimmed(model, masks, (3, 32, 32))
        assert (measured["slimmed_params"], measured["slimmed_flops"]) == (expected.params, expected.flops)
        # Dead conv2 and shortcut filters feed a residual sum: masked they save FLOPs, slimmed they stay.
        assert (
            measured["slimmed_params"] < measured["total_params"]
            and measured["slimmed_flops"] < measured["dense_flops"]
        )
    report = (path / "reports/report.md").read_text()
    assert "### Dead filters physically removed" in report and "whole-network sparsity" in report
    assert "up to date" in dvc("status", cwd=path).stdout


def test_missing_dataset_folder_is_one_line_naming_it(tmp_path):
    path = make_project(tmp_path / "project", tiny_cifar_params())
    result = dvc("repro", "prepare", cwd=path, check=False)
    assert result.returncode != 0
    assert "raw/cifar-10-batches-py: no such folder; expected a folder holding CIFAR-10 python batches" in (
        result.stdout + result.stderr
    )
    assert not (path / "data/prepared/dataset.safetensors").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["data"].update(root=None), "data.root: cifar10 is read from a folder; name the folder"),
        (lambda p: p["data"].update(name="imagenet"), "data.name: unknown dataset 'imagenet'"),
        (
            lambda p: p["data"].update(name="digits"),
            "data.root: digits ships with scikit-learn and reads no folder; set it to null",
        ),
        (lambda p: p["prune"].update(scope="global"), "prune.granularity: filter pruning removes a fraction of each"),
        (lambda p: p["prune"].update(granularity="channel"), "prune.granularity: Input should be 'weight' or 'filter'"),
        (lambda p: p["train"].update(augment="yes"), "train.augment: Input should be a valid boolean"),
        (lambda p: p["train"].update(precision="fp8"), "train.precision: Input should be 'fp32' or 'bf16'"),
        (lambda p: p["train"].pop("channels_last"), "train.channels_last: missing key"),
    ],
)
def test_paper_scale_params_errors_name_the_key(tmp_path, change, expected):
    params = tiny_cifar_params()
    change(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_params(tmp_path / "params.yaml")
