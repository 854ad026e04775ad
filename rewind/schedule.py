"""Learning-rate schedules as pure functions of the training step, and durations in epochs or steps.

Strategies replay segments of the dense schedule, so a schedule must be a function `lr(step)`
that can be evaluated anywhere, not a stateful torch scheduler. Time is counted in steps (one
mini-batch each); an epoch is `steps_per_epoch` of them, so a rewind point or a budget can be an
epoch or any iteration (`Duration`).

- step: `lr · gamma^(milestones passed)`, milestones in epochs (the paper's CIFAR schedule);
- cosine: `lr · (1 + cos(π s / S)) / 2` over the run's S steps;
- onecycle: torch's OneCycleLR (cosine annealing, start at lr/25, end at lr/25/1e4, peak at 30%);
- constant: `lr`.

Warmup multiplies the rate by `(s + 1) / W` for the first W = warmup_epochs · steps_per_epoch
steps (step, cosine and constant; one-cycle has its own rise).
"""

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from rewind import RewindError

ScheduleKind = Literal["step", "cosine", "onecycle", "constant"]
ONECYCLE_DIV, ONECYCLE_FINAL_DIV, ONECYCLE_PEAK = 25.0, 1e4, 0.3  # torch.optim.lr_scheduler.OneCycleLR's
ITERATIONS = re.compile(r"^([0-9]+)it$")


@dataclass(frozen=True)
class Duration:
    """A span of training: whole epochs, or iterations (`500it`, as open_lth writes them)."""

    amount: int
    unit: Literal["epochs", "iterations"] = "epochs"

    @classmethod
    def parse(cls, value: int | str) -> "Duration":
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return cls(value)
        match = ITERATIONS.match(value) if isinstance(value, str) else None
        if match is None:
            raise RewindError(f"{value!r} is no duration: an epoch count (20) or iterations (500it)")
        return cls(int(match.group(1)), "iterations")

    def steps(self, steps_per_epoch: int) -> int:
        return self.amount * steps_per_epoch if self.unit == "epochs" else self.amount

    def __str__(self) -> str:
        return str(self.amount) if self.unit == "epochs" else f"{self.amount}it"


@dataclass(frozen=True)
class Schedule:
    """lr(step) for a run of `epochs` epochs of `steps_per_epoch` steps each."""

    base: float
    epochs: int
    steps_per_epoch: int
    kind: ScheduleKind = "step"
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    warmup_epochs: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def lr(self, step: int) -> float:
        if not 0 <= step < self.total_steps:
            raise ValueError(f"step must be in 0 … {self.total_steps - 1}, got {step}")
        rate = self._shape(step)
        warmup = self.warmup_epochs * self.steps_per_epoch
        if step < warmup:
            rate *= (step + 1) / warmup
        return rate

    def rates(self, start: int, stop: int) -> list[float]:
        """The rates of steps start … stop-1: the segment a rewinding strategy replays."""
        return [self.lr(step) for step in range(start, stop)]

    def _shape(self, step: int) -> float:
        if self.kind == "step":
            rate = self.base
            for milestone in self.milestones:
                if milestone * self.steps_per_epoch <= step:
                    rate *= self.gamma  # not gamma ** k: libm's pow may round differently elsewhere
            return rate
        if self.kind == "cosine":
            return self.base * (1 + math.cos(math.pi * step / self.total_steps)) / 2
        if self.kind == "onecycle":
            return self._one_cycle(step)
        if self.kind == "constant":
            return self.base
        raise RewindError(f"unknown schedule {self.kind!r}; known: step, cosine, onecycle, constant")

    def _one_cycle(self, step: int) -> float:
        """torch's OneCycleLR, two phases with cosine annealing, as a function of the step."""
        start = self.base / ONECYCLE_DIV
        end = start / ONECYCLE_FINAL_DIV
        peak = float(ONECYCLE_PEAK * self.total_steps) - 1
        if step <= peak:
            return _cosine_between(start, self.base, step / peak)
        return _cosine_between(self.base, end, (step - peak) / (self.total_steps - 1 - peak))


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)
