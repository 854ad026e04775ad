"""The paper's own numbers beside ours, for the report: Renda, Frankle & Carbin's published runs of
the CIFAR-10 ResNets (paper/pruned.csv, paper/dense.csv; paper/convert.py made them from the
paper's data). The paper reports medians over its trials, with min and max: so does this.

A published number is set beside ours only where it measured the same thing: the same network
and data, the same pruning (global magnitude pruning of single weights, its "Unstructured"),
the same dense run (epochs, schedule, rates, batch size, momentum, weight decay, augmentation,
steps per epoch: so a budget of t epochs rewinds to the same point, T - t, of the same run), a
strategy defined as the paper's of that name, the same density and the same budget. `differences`
says what keeps a run from that, so the report can say why nothing was compared."""

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from rewind import RewindError
from rewind.schedule import Duration
from stages.shared.params import Params

PRUNED, DENSE = Path("paper/pruned.csv"), Path("paper/dense.csv")
DENSITY_TOLERANCE = 5e-4  # the paper rounds one-shot densities to 4 digits (0.1074 for 0.8**10)
# The dense run behind every CIFAR-10 ResNet the paper published: its code's
# vision/gpu-src/official/resnet/cifar10_main.py (lottery-ticket/rewinding-iclr20-public, commit
# 273e67d): 182 epochs at batch 128 of the 50,000 training images, lr 0.1 dropped to 0.01 and
# 0.001 at epochs 91 and 136, momentum 0.9 (not Nesterov), weight decay 2e-4, padded random
# crops and horizontal flips.
PAPER_TRAINING = {
    "epochs": 182,
    "batch_size": 128,
    "schedule": "step",
    "lr": 0.1,
    "milestones": [91, 136],
    "gamma": 0.1,
    "warmup_epochs": 0,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 2e-4,
    "augment": True,
}
PAPER_STEPS_PER_EPOCH = 391  # ceil(50,000 / 128)
# What the paper's strategy names mean, as rewind's data: (start weights, rates).
PAPER_STRATEGIES = {
    "ft": ("final", "constant"),
    "wr": ("rewind", "replay"),
    "lrr": ("final", "replay"),
    "reinit": ("reinit", "replay"),
}


@dataclass(frozen=True)
class Published:
    """Test accuracies of the paper's trials at one point: their median, min and max."""

    median: float
    low: float
    high: float
    trials: int


def published(accuracies: list[float]) -> Published:
    return Published(statistics.median(accuracies), min(accuracies), max(accuracies), len(accuracies))


def method(params: Params) -> str | None:
    """The paper's name for the run's pruning, when the paper ran it: global magnitude pruning of
    single weights is its "Unstructured". (Its filter pruning, Structured-A/B, prunes Li et al.'s
    layer sets, which params cannot be matched to with certainty: not compared.)"""
    p = params.prune
    if p.granularity == "weight" and p.scope == "global" and p.method == "magnitude" and not p.exclude:
        return "Unstructured"
    return None


def differences(params: Params, steps_per_epoch: int) -> list[str]:
    """Every setting in which the run differs from the paper's runs, each as `key: ours (the
    paper's …)`; empty when the paper's numbers measure what the run measures."""
    found = []
    if params.data.name != "cifar10":
        found.append(f"data.name: {params.data.name} (the paper's: cifar10)")
    if params.model.name not in networks():
        found.append(f"model.name: {params.model.name} (the paper's: {', '.join(sorted(networks()))})")
    if method(params) is None:
        p = params.prune
        ours = f"{p.method} {p.scope} {p.granularity}" + (f", excluding {p.exclude}" if p.exclude else "")
        found.append(f"prune: {ours} (the paper's: magnitude global weight, nothing excluded)")
    train = params.train.model_dump()
    found += [
        f"train.{key}: {train[key]} (the paper's: {theirs})"
        for key, theirs in PAPER_TRAINING.items()
        if train[key] != theirs
    ]
    if steps_per_epoch != PAPER_STEPS_PER_EPOCH:
        found.append(
            f"steps per epoch: {steps_per_epoch} "
            f"(the paper's: {PAPER_STEPS_PER_EPOCH}, CIFAR-10's 50,000 training images at batch 128)"
        )
    return found


def comparable(params: Params, steps_per_epoch: int) -> bool:
    return not differences(params, steps_per_epoch)


def strategy_difference(params: Params, name: str) -> str | None:
    """Why strategy `name` is not the paper's strategy of that name (None when it is): other start
    weights or rates, a stated rate, a pruning of its own."""
    spec = params.strategies[name]
    if name not in PAPER_STRATEGIES:
        return f"{name}: the paper ran no strategy of that name"
    if (spec.weights, spec.rates) != PAPER_STRATEGIES[name]:
        weights, rates = PAPER_STRATEGIES[name]
        return f"{name}: weights {spec.weights}, rates {spec.rates} (the paper's {name}: {weights}, {rates})"
    if spec.lr is not None:
        return f"{name}: a stated rate, lr {spec.lr:g} (the paper's {name}: the schedule's rates)"
    if spec.pruning is not None and spec.pruning != params.prune.method:
        return f"{name}: pruning {spec.pruning} (the paper's {name}: prunes as the run does)"
    return None


def networks() -> set[str]:
    return {row["network"] for row in _rows(DENSE)}


def dense(params: Params, steps_per_epoch: int) -> Published | None:
    """The paper's dense test accuracy of the run's network, if the paper trained it as the run does."""
    found = [float(row["test_acc"]) for row in _rows(DENSE) if row["network"] == params.model.name]
    return published(found) if comparable(params, steps_per_epoch) and found else None


def pruned(params: Params, sparsity: dict[int, float], steps_per_epoch: int) -> dict[tuple[str, int], Published]:
    """(strategy, round) → the paper's trials at that strategy's budget and the round's density,
    for every compared strategy the paper defined alike and every round the paper ran; empty when
    the run is not comparable. The paper gives budgets in epochs; an iteration budget matches the
    nearest whole epoch count (the paper's "170 epochs" after rewinding to iteration 4701 are
    66,407 of its iterations)."""
    if not comparable(params, steps_per_epoch):
        return {}
    iterative = str(params.prune.schedule == "iterative")
    rows = [
        row
        for row in _rows(PRUNED)
        if (row["network"], row["prune_method"], row["is_iterative"]) == (params.model.name, method(params), iterative)
    ]
    matches = {}
    for strategy in params.retrained:
        if strategy_difference(params, strategy) is not None:
            continue
        budget = round(Duration.parse(params.strategies[strategy].budget).steps(steps_per_epoch) / steps_per_epoch)
        for round_id, sparse in sparsity.items():
            found = [
                float(row["test_acc"])
                for row in rows
                if row["strategy"] == strategy
                and float(row["retrain_time"]) == budget
                and abs(float(row["density"]) - (1 - sparse)) <= DENSITY_TOLERANCE
            ]
            if found:
                matches[strategy, round_id] = published(found)
    return matches


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as err:
        raise RewindError(f"{path}: cannot read the paper's results ({err.strerror})") from None
