import pytest
import torch

from rewind import RewindError
from rewind.schedule import StepSchedule
from rewind.strategies import Strategy, resolve, start_state

T = 10
SCHEDULE = StepSchedule(0.1, (4, 8), 0.1)
FINAL = {"w": torch.full((2,), 10.0)}
INIT = {"w": torch.full((2,), -1.0)}


def rewind_point(epoch: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((2,), float(epoch))}


def start(strategy: Strategy) -> torch.Tensor:
    return start_state(resolve(strategy, SCHEDULE, T), lambda: FINAL, rewind_point, lambda: INIT)["w"]


@pytest.mark.parametrize("t", [1, 3, 6, 10])
def test_weight_rewinding_starts_at_epoch_T_minus_t_and_replays_its_rates(t):
    wr = Strategy("wr", "rewind", "replay", t)
    plan = resolve(wr, SCHEDULE, T)
    assert plan.rewind_epoch == T - t
    assert torch.equal(start(wr), torch.full((2,), float(T - t)))
    assert list(plan.rates) == [SCHEDULE.lr(e) for e in range(T - t, T)]
    assert list(plan.labels) == list(range(T - t, T))


@pytest.mark.parametrize("t", [1, 3, 6, 10])
def test_lr_rewinding_starts_from_final_weights_with_the_same_rates_as_wr(t):
    lrr = resolve(Strategy("lrr", "final", "replay", t), SCHEDULE, T)
    wr = resolve(Strategy("wr", "rewind", "replay", t), SCHEDULE, T)
    assert torch.equal(start(Strategy("lrr", "final", "replay", t)), FINAL["w"])
    assert lrr.rates == wr.rates
    assert lrr.rewind_epoch is None


@pytest.mark.parametrize("t", [1, 3, 6, 10])
def test_fine_tuning_uses_the_final_rate_for_all_t_epochs(t):
    ft = resolve(Strategy("ft", "final", "constant", t), SCHEDULE, T)
    assert torch.equal(start(Strategy("ft", "final", "constant", t)), FINAL["w"])
    assert list(ft.rates) == [SCHEDULE.lr(T - 1)] * t
    assert SCHEDULE.lr(T - 1) == pytest.approx(0.001)


def test_reinit_uses_fresh_weights_and_with_budget_T_the_full_schedule():
    reinit = resolve(Strategy("reinit", "reinit", "replay", T), SCHEDULE, T)
    assert torch.equal(start(Strategy("reinit", "reinit", "replay", T)), INIT["w"])
    assert list(reinit.rates) == SCHEDULE.rates(0, T)


def test_only_the_needed_source_is_loaded():
    def boom(*_):
        raise AssertionError("loaded a source the strategy does not use")

    plan = resolve(Strategy("wr", "rewind", "replay", 2), SCHEDULE, T)
    assert start_state(plan, boom, rewind_point, boom)["w"][0] == T - 2


def test_budget_zero_means_no_retraining_and_budget_above_T_is_refused():
    assert resolve(Strategy("none", "final", "constant", 0), SCHEDULE, T).rates == ()
    with pytest.raises(RewindError, match=r"strategies.wr.budget: 11"):
        resolve(Strategy("wr", "rewind", "replay", T + 1), SCHEDULE, T)
