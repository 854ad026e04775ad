"""The statistics the report rests on: means and spreads over seeds, paired differences between
strategies with their confidence intervals, and the answers derived from them. Plain functions
over numbers, so tests can check them on hand-made values and against scipy.

Strategies are compared paired by seed: every strategy of a seed starts from the same dense
network and sees the same data order, so the difference a - b within a seed removes what the
seeds do to both. A lead is a finding only when the 95% confidence interval of the mean paired
difference (Student's t with n - 1 degrees of freedom) excludes zero; with one seed there is no
interval and no verdict.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

CONFIDENCE = 0.95
K = TypeVar("K")


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float
    n: int
    values: tuple[float, ...] = ()  # one per seed, in the seeds' order: for paired differences


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation (n-1 in the denominator; 0 for a single value)."""
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Summary(mean, std, n, tuple(values))


@dataclass(frozen=True)
class Difference:
    """The mean paired difference a - b over n seeds with its confidence interval [low, high]
    (infinite with one seed: no interval)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero: a lead the seeds support."""
        return self.low > 0 or self.high < 0


def paired_difference(a: Summary, b: Summary, confidence: float = CONFIDENCE) -> Difference:
    """a - b seed by seed: the mean difference and its two-sided paired-t confidence interval."""
    if len(a.values) != len(b.values) or not a.values:
        raise ValueError(f"paired values needed on both sides, got {len(a.values)} and {len(b.values)}")
    differences = summarize([x - y for x, y in zip(a.values, b.values, strict=True)])
    if differences.n < 2:
        return Difference(differences.mean, -math.inf, math.inf, differences.n)
    from scipy.stats import t  # only the report computes intervals

    half = t.ppf((1 + confidence) / 2, differences.n - 1) * differences.std / math.sqrt(differences.n)
    return Difference(differences.mean, differences.mean - half, differences.mean + half, differences.n)


def safe_sparsity(points: Sequence[tuple[float, Summary]], dense: Summary) -> float | None:
    """The highest sparsity whose mean accuracy is within one standard deviation of the dense
    network's (or above it): mean >= dense.mean - dense.std. None if no sparsity qualifies."""
    safe = [sparsity for sparsity, summary in points if summary.mean >= dense.mean - dense.std]
    return max(safe) if safe else None


def best(chosen_on: Mapping[K, Summary]) -> list[K]:
    """Every key whose mean is the highest, in the mapping's order: one, or all those tied for it
    (equal means, e.g. identical correct counts seed by seed). A tie is reported as a tie; the
    mapping's order is no reason to prefer one of them."""
    top = max(summary.mean for summary in chosen_on.values())
    return [key for key, summary in chosen_on.items() if summary.mean == top]


@dataclass(frozen=True)
class Verdict:
    winner: str | None  # None when several tie for the best mean on the choosing numbers
    runner_up: str | None
    lead: Difference | None  # winner - runner-up, paired by seed
    tied: tuple[str, ...] = ()  # the strategies tied for the best mean, when several are


def winner(chosen_on: Mapping[str, Summary], reported_on: Mapping[str, Summary]) -> Verdict:
    """The strategy with the highest mean on `chosen_on` (the validation split), and its paired
    lead over the runner-up there, measured on `reported_on` (the test split): a choice made on the
    numbers it is reported with would flatter it. Several strategies sharing the highest mean are a
    tie: no winner, no runner-up, no lead."""
    tied = best(chosen_on)
    if len(tied) > 1:
        return Verdict(None, None, None, tuple(tied))
    ranked = sorted(chosen_on, key=lambda name: chosen_on[name].mean, reverse=True)
    if len(ranked) == 1:
        return Verdict(ranked[0], None, None)
    first, second = ranked[:2]
    return Verdict(first, second, paired_difference(reported_on[first], reported_on[second]))
