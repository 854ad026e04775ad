import math

import pytest
import torch

from rewind import RewindError
from rewind.schedule import Duration, Schedule


def test_step_schedule_drops_at_milestone_epochs_and_holds_within_an_epoch():
    schedule = Schedule(0.1, epochs=6, steps_per_epoch=3, milestones=(2, 4), gamma=0.1)
    assert schedule.rates(0, 18) == pytest.approx([0.1] * 6 + [0.01] * 6 + [0.001] * 6)


def test_warmup_ramps_linearly_per_step_then_holds():
    schedule = Schedule(0.4, epochs=3, steps_per_epoch=2, warmup_epochs=2)
    assert schedule.rates(0, 6) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_cosine_by_hand():
    schedule = Schedule(0.2, epochs=2, steps_per_epoch=4, kind="cosine")
    assert schedule.lr(0) == 0.2
    assert schedule.lr(4) == pytest.approx(0.1)  # half way: cos(π/2) = 0
    assert schedule.lr(6) == pytest.approx(0.2 * (1 + math.cos(math.pi * 6 / 8)) / 2)


def test_constant_is_constant_after_warmup():
    schedule = Schedule(0.05, epochs=3, steps_per_epoch=2, kind="constant", warmup_epochs=1)
    assert schedule.rates(0, 6) == pytest.approx([0.025, 0.05, 0.05, 0.05, 0.05, 0.05])


@pytest.mark.parametrize("total", [10, 37, 391 * 3])
def test_one_cycle_is_torchs_one_cycle_lr(total):
    """torch.optim.lr_scheduler.OneCycleLR's defaults, step by step, as a pure function."""
    schedule = Schedule(0.1, epochs=total, steps_per_epoch=1, kind="onecycle")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=total)
    theirs = []
    for _ in range(total):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        torch_schedule.step()
    assert schedule.rates(0, total) == pytest.approx(theirs, rel=1e-9, abs=1e-15)


def test_segment_is_the_same_function_evaluated_later():
    for kind in ("step", "cosine", "onecycle", "constant"):
        milestones = (3, 7) if kind == "step" else ()
        schedule = Schedule(0.1, epochs=10, steps_per_epoch=5, kind=kind, milestones=milestones, gamma=0.5)
        assert schedule.rates(33, 50) == schedule.rates(0, 50)[33:], kind


def test_steps_outside_the_run_and_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="step"):
        Schedule(0.1, epochs=2, steps_per_epoch=3).lr(6)
    with pytest.raises(RewindError, match="unknown schedule 'linear'"):
        Schedule(0.1, epochs=2, steps_per_epoch=3, kind="linear").lr(0)


def test_durations_in_epochs_or_iterations():
    assert Duration.parse(20).steps(391) == 7820
    assert Duration.parse("4701it").steps(391) == 4701
    assert (str(Duration.parse(20)), str(Duration.parse("500it"))) == ("20", "500it")
    for bad in ("20", "it", "-3it", 2.5, -1, True):
        with pytest.raises(RewindError, match="is no duration"):
            Duration.parse(bad)
