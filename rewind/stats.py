"""The statistics the report rests on: means and spreads over seeds, and the answers derived
from them. Plain functions over numbers, so tests can check them on hand-made values."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation (n-1 in the denominator; 0 for a single value)."""
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Summary(mean, std, n)


def safe_sparsity(points: Sequence[tuple[float, Summary]], dense: Summary) -> float | None:
    """The highest sparsity whose mean accuracy is within one standard deviation of the dense
    network's (or above it): mean >= dense.mean - dense.std. None if no sparsity qualifies."""
    safe = [sparsity for sparsity, summary in points if summary.mean >= dense.mean - dense.std]
    return max(safe) if safe else None


@dataclass(frozen=True)
class Verdict:
    winner: str
    runner_up: str | None
    gap: float
    beyond_spread: bool


def winner(results: Mapping[str, Summary]) -> Verdict:
    """The strategy with the highest mean, its lead over the next one, and whether that lead is
    larger than the seeds' spread: the larger of the two strategies' standard deviations."""
    ranked = sorted(results.items(), key=lambda item: item[1].mean, reverse=True)
    best_name, best = ranked[0]
    if len(ranked) == 1:
        return Verdict(best_name, None, math.inf, False)
    second_name, second = ranked[1]
    gap = best.mean - second.mean
    return Verdict(best_name, second_name, gap, gap > max(best.std, second.std))


def beats(a: Summary, b: Summary) -> bool:
    """Whether `a` is above `b` by more than the seeds' spread (the larger standard deviation)."""
    return a.mean - b.mean > max(a.std, b.std)
