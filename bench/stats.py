"""Summaries of repeated measurements: the median with its spread, never a single time."""

import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (inclusive method) and extremes of `values`."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise ValueError("no measurements to summarise")
    q1, q3 = ordered[0], ordered[-1]
    if len(ordered) > 1:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "q1": q1,
        "q3": q3,
        "n": len(ordered),
    }


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, float]:
    """Summary of paired ratios: pairing repetitions taken back to back cancels slow drifts in load."""
    return summary([n / d for n, d in zip(numerators, denominators, strict=True)])


def timed(action: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def interleaved(actions: dict[str, Callable[[], object]], repetitions: int) -> dict[str, list[float]]:
    """Time each action once per repetition, alternating their order, so both see the same load."""
    return alternated({name: partial(timed, action) for name, action in actions.items()}, repetitions)


def alternated(measures: dict[str, Callable[[], float]], repetitions: int) -> dict[str, list[float]]:
    """Take each measurement once per repetition, alternating their order, so both see the same load
    (for measurements timed elsewhere, e.g. in a worker process)."""
    names = list(measures)
    values: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repetitions):
        for name in names if rep % 2 == 0 else reversed(names):
            values[name].append(measures[name]())
    return values
