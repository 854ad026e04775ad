"""The paper's own numbers beside ours, for the report: Renda, Frankle & Carbin's published runs of
the CIFAR-10 ResNets (paper/pruned.csv, paper/dense.csv; paper/convert.py made them from the
paper's data), matched to a run by network, pruning method, schedule, strategy, density and
budget. The paper reports medians over its trials, with min and max: so does this."""

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from rewind import RewindError
from rewind.schedule import Duration
from stages.shared.params import Params

PRUNED, DENSE = Path("paper/pruned.csv"), Path("paper/dense.csv")
DENSITY_TOLERANCE = 5e-4  # the paper rounds one-shot densities to 4 digits (0.1074 for 0.8**10)


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


def comparable(params: Params) -> bool:
    return params.data.name == "cifar10" and method(params) is not None and params.model.name in networks()


def networks() -> set[str]:
    return {row["network"] for row in _rows(DENSE)}


def dense(params: Params) -> Published | None:
    """The paper's dense test accuracy of the run's network, if the paper trained it."""
    found = [float(row["test_acc"]) for row in _rows(DENSE) if row["network"] == params.model.name]
    return published(found) if comparable(params) and found else None


def pruned(params: Params, sparsity: dict[int, float], steps_per_epoch: int) -> dict[tuple[str, int], Published]:
    """(strategy, round) → the paper's trials at that strategy's budget and the round's density,
    for every compared strategy and round the paper ran; empty when the run is not comparable.
    The paper gives budgets in epochs; an iteration budget matches the nearest whole epoch count
    (the paper's "170 epochs" after rewinding to iteration 4701 are 66,407 of its iterations)."""
    if not comparable(params):
        return {}
    iterative = str(params.prune.schedule == "iterative")
    rows = [
        row
        for row in _rows(PRUNED)
        if (row["network"], row["prune_method"], row["is_iterative"]) == (params.model.name, method(params), iterative)
    ]
    matches = {}
    for strategy in params.retrained:
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
