"""stages.paper and the report's table beside the paper: the numbers are the medians of the
paper's own trials at the same network, pruning, dense run, strategy, density and budget, and
the report says what matched, or why nothing did."""

import csv
import statistics

import pytest
import yaml

from rewind.stats import summarize
from stages import paper
from stages.report import paper_table
from stages.shared.params import load_params
from tests.conftest import ROOT


@pytest.fixture
def resnet20(monkeypatch):
    """The resnet20 preset's params, read from the project root (where paper/ lies)."""
    monkeypatch.chdir(ROOT)
    return load_params(ROOT / "presets/resnet20_cifar10.yaml")


def sparsities(params) -> dict[int, float]:
    return {spec.id: 1 - 0.8 ** (spec.id + 1) for spec in params.rounds}


def medians_from_the_csv(network: str, strategy: str, budget: int, density: float) -> float:
    with open(ROOT / "paper/pruned.csv", newline="") as handle:
        found = [
            float(row["test_acc"])
            for row in csv.DictReader(handle)
            if (row["network"], row["prune_method"], row["is_iterative"], row["strategy"])
            == (network, "Unstructured", "True", strategy)
            and float(row["retrain_time"]) == budget
            and abs(float(row["density"]) - density) < 1e-4
        ]
    assert len(found) == 3, "the paper ran three trials"
    return statistics.median(found)


def test_published_points_are_the_medians_of_the_papers_trials(resnet20):
    sparsity = sparsities(resnet20)
    published = paper.pruned(resnet20, sparsity, 391)
    # the paper pruned ResNet-20 iteratively for 10 rounds (down to 10.7% of the weights), the preset 16
    assert set(published) == {(s, k) for s in ("ft", "wr", "lrr") for k in range(10)}
    for (strategy, round_id), found in published.items():
        expected = medians_from_the_csv("resnet20", strategy, 170, 1 - sparsity[round_id])
        assert found.median == expected and found.trials == 3 and found.low <= found.median <= found.high
    assert paper.dense(resnet20, 391).median == pytest.approx(0.9172, abs=5e-5), "the paper's README: 0.9172"


def test_the_report_sets_a_resnet20_run_beside_the_paper(resnet20):
    sparsity = sparsities(resnet20)
    ours = {s: {k: summarize([0.90, 0.91, 0.92]) for k in sparsity} for s in resnet20.compare}
    table = paper_table(resnet20, ours, summarize([0.92, 0.92, 0.93]), sparsity, 391)
    lrr_first = medians_from_the_csv("resnet20", "lrr", 170, 0.8)
    row = next(line for line in table.splitlines() if line.startswith("| 20.00% | `lrr` |"))
    assert f"| {100 * lrr_first:.2f} (" in row and row.endswith(f"| {100 * (0.91 - lrr_first):+.2f} |")
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + 1 + 3 * 10, "header, dense, rows"
    assert table.startswith("Matched: resnet20 on CIFAR-10, global magnitude pruning of single weights")


def test_runs_the_paper_did_not_make_are_not_compared(resnet20, monkeypatch):
    digits = load_params(ROOT / "params.yaml")
    assert not paper.comparable(digits, 22) and paper.pruned(digits, {0: 0.5}, 22) == {}
    table = paper_table(digits, {}, summarize([0.9]), {}, 22)
    assert table.startswith("Nothing is set beside the paper's numbers") and "data.name: digits" in table
    filters = load_params(ROOT / "presets/resnet56_cifar10_filters.yaml")
    assert not paper.comparable(filters, 391), "Structured-A/B cannot be matched to params with certainty"


def resnet20_with(tmp_path, **train) -> object:
    """The resnet20 preset with these train keys changed, budgets cut to fit, validated."""
    raw = yaml.safe_load((ROOT / "presets/resnet20_cifar10.yaml").read_text())
    raw["train"].update(train)
    epochs = raw["train"]["epochs"]
    for spec in raw["strategies"].values():
        spec["budget"] = min(spec["budget"], epochs)
    raw["sweep"]["budgets"] = [b for b in raw["sweep"]["budgets"] if b <= epochs]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("train", "steps", "named"),
    [
        ({"epochs": 40, "milestones": [20, 30]}, 391, "train.epochs: 40 (the paper's: 182); train.milestones"),
        ({"weight_decay": 1e-4}, 391, "train.weight_decay: 0.0001 (the paper's: 0.0002)"),
        ({"batch_size": 64}, 782, "train.batch_size: 64 (the paper's: 128); steps per epoch: 782"),
        ({"schedule": "cosine", "milestones": []}, 391, "train.schedule: cosine (the paper's: step)"),
        ({}, 3, "steps per epoch: 3 (the paper's: 391, CIFAR-10's 50,000 training images at batch 128)"),
    ],
    ids=["40-epochs", "weight-decay", "batch-size", "cosine", "tiny-data"],
)
def test_a_run_off_the_papers_dense_run_gets_none_of_its_numbers(resnet20, tmp_path, train, steps, named):
    """A 40-epoch ResNet-20 (or another rate, batch, decay, schedule, or a few images an epoch) is not
    the paper's run: its budgets rewind elsewhere. No number of the paper is set beside it, in the
    table or the figure, and the report names what differs."""
    params = resnet20_with(tmp_path, **train)
    sparsity = sparsities(params)
    assert paper.pruned(params, sparsity, steps) == {} and paper.dense(params, steps) is None
    ours = {s: {k: summarize([0.90, 0.91, 0.92]) for k in sparsity} for s in params.compare}
    table = paper_table(params, ours, summarize([0.92, 0.92, 0.93]), sparsity, steps)
    assert table.startswith("Nothing is set beside the paper's numbers") and named in table, table
    assert "resnet20" not in table.split("differs from them in ")[1], "the network is the paper's"


def test_a_strategy_defined_otherwise_than_the_papers_is_not_compared(resnet20, tmp_path):
    params = resnet20_with(tmp_path)
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["strategies"]["ft"]["lr"] = 0.01
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    sparsity = sparsities(params)
    assert {s for s, _ in paper.pruned(params, sparsity, 391)} == {"wr", "lrr"}
    ours = {s: {k: summarize([0.90, 0.91, 0.92]) for k in sparsity} for s in params.compare}
    table = paper_table(params, ours, summarize([0.92, 0.92, 0.93]), sparsity, 391)
    assert "Not compared, defined otherwise than the paper's: ft: a stated rate, lr 0.01" in table


def test_convert_keeps_the_cifar10_resnets_row_for_row(tmp_path):
    from paper.convert import convert

    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir(), target.mkdir()
    header = (
        "network,prune_method,is_iterative,retrain_method,strategy,density,retrain_time,trial,test_acc,val_acc,flops"
    )
    (source / "pruned.csv").write_text(
        f"{header}\ngnmt,Unstructured,False,finetune,ft,0.0038,0.5,trial_1,0,0,\n"
        "resnet20,Unstructured,True,lr_finetune,lrr,0.8,170,trial_2,0.9161,0.912,\n"
    )
    (source / "dense.csv").write_text("network,test_acc,val_acc,flops\nresnet50,0.76,0.75,1\nresnet56,0.9345,0.93,2\n")
    assert convert(source, target) == {"pruned.csv": 1, "dense.csv": 1}
    assert (target / "pruned.csv").read_text().splitlines() == [
        "network,prune_method,is_iterative,strategy,density,retrain_time,trial,test_acc,val_acc",
        "resnet20,Unstructured,True,lrr,0.8,170,trial_2,0.9161,0.912",
    ]
    assert (target / "dense.csv").read_text().splitlines()[1] == "resnet56,0.9345,0.93"
