import pytest

from rewind.schedule import StepSchedule


def test_step_schedule_drops_at_milestones():
    schedule = StepSchedule(0.1, (2, 4), 0.1)
    assert schedule.rates(0, 6) == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_warmup_ramps_linearly_then_holds():
    schedule = StepSchedule(0.4, (), 0.1, warmup_epochs=4)
    assert schedule.rates(0, 6) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_segment_is_the_same_function_evaluated_later():
    schedule = StepSchedule(0.1, (3, 7), 0.5, warmup_epochs=2)
    full = schedule.rates(0, 10)
    assert schedule.rates(6, 10) == full[6:]


def test_negative_epoch_is_refused():
    with pytest.raises(ValueError, match="epoch"):
        StepSchedule(0.1).lr(-1)
