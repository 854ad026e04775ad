"""Learning-rate schedules as pure functions of the epoch.

Strategies replay segments of the dense schedule, so the schedule must be a function
`lr(e)` that can be evaluated at any epoch, not a stateful torch scheduler.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepSchedule:
    """Multi-step decay with an optional linear warmup, evaluated per epoch.

    lr(e) = base * gamma ** (number of milestones <= e), scaled by (e + 1) / warmup during warmup.
    """

    base: float
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    warmup_epochs: int = 0

    def lr(self, epoch: int) -> float:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        rate = self.base
        for milestone in self.milestones:
            if milestone <= epoch:
                rate *= self.gamma  # not gamma ** k: libm's pow may round differently elsewhere
        if epoch < self.warmup_epochs:
            rate *= (epoch + 1) / self.warmup_epochs
        return rate

    def rates(self, start: int, stop: int) -> list[float]:
        """The rates of epochs start … stop-1: the segment a rewinding strategy replays."""
        return [self.lr(e) for e in range(start, stop)]
