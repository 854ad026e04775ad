"""Retraining strategies as data: where the start weights come from and which rates replay.

After pruning with mask m, a strategy with budget t (0 <= t <= T, in steps: an epoch count or
iterations, `rewind.schedule.Duration`) retrains for t steps of the dense run's T:

    ft      final weights W_T * m        constant rate lr(T-1)
    wr      rewind point W_(T-t) * m     rates lr(T-t) … lr(T-1), replayed
    lrr     final weights W_T * m        rates lr(T-t) … lr(T-1), replayed
    reinit  fresh random weights * m     rates lr(T-t) … lr(T-1) (t = T: the full schedule)

A constant-rate strategy may state its rate instead (`rate`): fine-tuning at lr(T-1) follows the
paper, but where the schedule ends near zero (cosine, one-cycle) that rate cannot move the weights,
and fine-tuning at a stated rate is the remedy, as data. `too_small_to_train` says when a
retraining's rates are that small: every one below STILL_FRACTION of the dense run's base rate.

Budget 0 is "prune, do not retrain". Every strategy sees the training data in the order the
dense run saw steps T-t … T-1, so strategies differ only in start weights and rates.

Momentum starts fresh by default; `momentum="restored"` starts from the momentum saved with the
start weights (at the rewind point for wr, at the end of the run that made the final weights
otherwise), as the paper's code does. Fresh weights have no momentum to restore.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from rewind import RewindError
from rewind.schedule import Duration, Schedule

WeightsSource = Literal["final", "rewind", "reinit"]
RatesSource = Literal["replay", "constant"]
MomentumSource = Literal["fresh", "restored"]
State = dict[str, torch.Tensor]
# A retraining whose every rate is below this fraction of the dense run's base rate leaves the
# weights where they were: the paper fine-tunes at a hundredth of its base rate (0.001 of 0.1), ten
# times this; a cosine schedule's last rate is a few millionths of its base.
STILL_FRACTION = 1e-3


@dataclass(frozen=True)
class Strategy:
    name: str
    weights: WeightsSource
    rates: RatesSource
    budget: Duration
    momentum: MomentumSource = "fresh"
    rate: float | None = None  # constant rates only: this rate instead of the final one, lr(T-1)


@dataclass(frozen=True)
class Retraining:
    """One round's retraining, resolved against the dense run's schedule: a rate per step, from
    step `start_step` of the dense run's time (its data order) to its end."""

    weights: WeightsSource
    rewind_step: int | None
    rates: tuple[float, ...]
    start_step: int
    momentum: MomentumSource = "fresh"


def resolve(strategy: Strategy, schedule: Schedule) -> Retraining:
    """Turn a strategy into start-weight source, per-step rates and start step for the dense run."""
    total, name = schedule.total_steps, strategy.name
    t = strategy.budget.steps(schedule.steps_per_epoch)
    if not 0 <= t <= total:
        raise RewindError(f"strategy {name}: a budget of {strategy.budget} is outside the dense run's {total} steps")
    if strategy.rates == "replay":
        rates = schedule.rates(total - t, total)
    elif strategy.rates == "constant":
        rates = [schedule.lr(total - 1) if strategy.rate is None else strategy.rate] * t
    else:
        raise RewindError(f"strategy {name}: unknown rates {strategy.rates!r}; known: replay, constant")
    if strategy.rate is not None and strategy.rates != "constant":
        raise RewindError(f"strategy {name}: a stated rate is for constant rates; replayed rates are the schedule's")
    if strategy.weights not in ("final", "rewind", "reinit"):
        raise RewindError(f"strategy {name}: unknown weights {strategy.weights!r}; known: final, rewind, reinit")
    if strategy.momentum not in ("fresh", "restored"):
        raise RewindError(f"strategy {name}: unknown momentum {strategy.momentum!r}; known: fresh, restored")
    if strategy.momentum == "restored" and strategy.weights == "reinit":
        raise RewindError(f"strategy {name}: fresh weights have no momentum to restore")
    rewind_step = total - t if strategy.weights == "rewind" else None
    return Retraining(strategy.weights, rewind_step, tuple(rates), total - t, strategy.momentum)


def too_small_to_train(retraining: Retraining, schedule: Schedule) -> bool:
    """Whether a retraining with a budget has no rate of at least STILL_FRACTION of the dense run's
    base rate: its steps cannot move the weights, so it is the pruned network, not retrained
    (budget 0, retraining nothing by design, is not "too small")."""
    return bool(retraining.rates) and max(retraining.rates) < STILL_FRACTION * schedule.base


def start_state(
    retraining: Retraining,
    final: Callable[[], State],
    rewind_point: Callable[[int], State],
    fresh: Callable[[], State],
) -> State:
    """The unmasked start weights; sources are callables so only the one needed is loaded."""
    if retraining.weights == "final":
        return final()
    if retraining.weights == "rewind":
        assert retraining.rewind_step is not None
        return rewind_point(retraining.rewind_step)
    return fresh()


def start_momentum(
    retraining: Retraining, final: Callable[[], State], rewind_point: Callable[[int], State]
) -> State | None:
    """The momentum to start from, saved with the start weights; None for fresh momentum."""
    if retraining.momentum == "fresh":
        return None
    if retraining.weights == "rewind":
        assert retraining.rewind_step is not None
        return rewind_point(retraining.rewind_step)
    return final()
