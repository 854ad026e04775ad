import pytest
import torch

from rewind import RewindError
from rewind.schedule import Duration, Schedule
from rewind.strategies import Strategy, resolve, start_momentum, start_state, too_small_to_train

T = 10
SCHEDULE = Schedule(0.1, epochs=T, steps_per_epoch=1, milestones=(4, 8), gamma=0.1)
FINAL = {"w": torch.full((2,), 10.0)}
INIT = {"w": torch.full((2,), -1.0)}


def rewind_point(epoch: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((2,), float(epoch))}


def start(strategy: Strategy) -> torch.Tensor:
    return start_state(resolve(strategy, SCHEDULE), lambda: FINAL, rewind_point, lambda: INIT)["w"]


@pytest.mark.parametrize("t", [1, 3, 6, 10])
def test_weight_rewinding_starts_at_epoch_T_minus_t_and_replays_its_rates(t):
    wr = Strategy("wr", "rewind", "replay", Duration(t))
    plan = resolve(wr, SCHEDULE)
    assert plan.rewind_step == T - t
    assert torch.equal(start(wr), torch.full((2,), float(T - t)))
    assert list(plan.rates) == [SCHEDULE.lr(e) for e in range(T - t, T)]
    assert plan.start_step == T - t


@pytest.mark.parametrize("t", [1, 3, 6, 10])
def test_lr_rewinding_starts_from_final_weights_with_the_same_rates_as_wr(t):
    lrr = resolve(Strategy("lrr", "final", "replay", Duration(t)), SCHEDULE)
    wr = resolve(Strategy("wr", "rewind", "replay", Duration(t)), SCHEDULE)
    assert torch.equal(start(Strategy("lrr", "final", "replay", Duration(t))), FINAL["w"])
    assert lrr.rates == wr.rates
    assert lrr.rewind_step is None


@pytest.mark.parametrize("t", [1, 3, 6, 10])
def test_fine_tuning_uses_the_final_rate_for_all_t_epochs(t):
    ft = resolve(Strategy("ft", "final", "constant", Duration(t)), SCHEDULE)
    assert torch.equal(start(Strategy("ft", "final", "constant", Duration(t))), FINAL["w"])
    assert list(ft.rates) == [SCHEDULE.lr(T - 1)] * t
    assert SCHEDULE.lr(T - 1) == pytest.approx(0.001)


def test_reinit_uses_fresh_weights_and_with_budget_T_the_full_schedule():
    reinit = resolve(Strategy("reinit", "reinit", "replay", Duration(T)), SCHEDULE)
    assert torch.equal(start(Strategy("reinit", "reinit", "replay", Duration(T))), INIT["w"])
    assert list(reinit.rates) == SCHEDULE.rates(0, T)


def test_only_the_needed_source_is_loaded():
    def boom(*_):
        raise AssertionError("loaded a source the strategy does not use")

    plan = resolve(Strategy("wr", "rewind", "replay", Duration(2)), SCHEDULE)
    assert start_state(plan, boom, rewind_point, boom)["w"][0] == T - 2


def test_budget_zero_means_no_retraining_and_budget_above_T_is_refused():
    assert resolve(Strategy("none", "final", "constant", Duration(0)), SCHEDULE).rates == ()
    with pytest.raises(RewindError, match=r"strategy wr: a budget of 11 is outside the dense run's 10 steps"):
        resolve(Strategy("wr", "rewind", "replay", Duration(T + 1)), SCHEDULE)


def momentum_of(strategy: Strategy) -> torch.Tensor | None:
    """The start momentum, from stand-ins whose values say where they came from."""
    plan = resolve(strategy, SCHEDULE)
    state = start_momentum(plan, lambda: {"w": FINAL["w"] * 2}, lambda epoch: {"w": torch.full((2,), -float(epoch))})
    return None if state is None else state["w"]


@pytest.mark.parametrize("weights", ["final", "rewind", "reinit"])
def test_momentum_starts_fresh_by_default(weights):
    assert momentum_of(Strategy("s", weights, "replay", Duration(3))) is None


def test_restored_momentum_is_the_one_saved_with_the_start_weights():
    """wr: the momentum at its rewind point T-t; final-weight strategies: at the end of the run
    that produced the final weights (the paper code's behaviour)."""
    assert torch.equal(momentum_of(Strategy("wr", "rewind", "replay", Duration(3), "restored")), torch.full((2,), -7.0))
    assert torch.equal(momentum_of(Strategy("lrr", "final", "replay", Duration(3), "restored")), FINAL["w"] * 2)
    assert torch.equal(momentum_of(Strategy("ft", "final", "constant", Duration(3), "restored")), FINAL["w"] * 2)


def test_fresh_weights_have_no_momentum_to_restore():
    with pytest.raises(RewindError, match="strategy reinit: fresh weights have no momentum to restore"):
        resolve(Strategy("reinit", "reinit", "replay", Duration(T), "restored"), SCHEDULE)


def test_an_iteration_budget_rewinds_to_that_very_step_and_replays_from_it():
    """Rewinding to iteration 34 of 40 (epoch 8, batch 2 at 4 steps an epoch): the dense run's
    weights after step 34, its rates from step 34, its data from step 34."""
    schedule = Schedule(0.1, epochs=10, steps_per_epoch=4, milestones=(4, 8), gamma=0.1)
    wr = resolve(Strategy("wr", "rewind", "replay", Duration(6, "iterations")), schedule)
    ft = resolve(Strategy("ft", "final", "constant", Duration(6, "iterations")), schedule)
    assert (wr.rewind_step, wr.start_step, list(wr.rates)) == (34, 34, schedule.rates(34, 40))
    assert list(ft.rates) == [schedule.lr(39)] * 6 and ft.start_step == 34


def test_a_stated_constant_rate_replaces_the_final_one_and_only_for_constant_rates():
    ft = resolve(Strategy("ft", "final", "constant", Duration(3), rate=0.01), SCHEDULE)
    assert list(ft.rates) == [0.01] * 3 and ft.start_step == T - 3
    with pytest.raises(RewindError, match="strategy lrr: a stated rate is for constant rates"):
        resolve(Strategy("lrr", "final", "replay", Duration(3), rate=0.01), SCHEDULE)


def test_rates_too_small_to_train_are_those_below_a_thousandth_of_the_base_rate():
    """Cosine over 30 epochs of 22 steps with 2 warmup epochs (digits at batch 64) ends at a rate of
    5.7e-7, far below 1e-3 of its 0.1: fine-tuning there cannot move the weights; the step
    schedule's 0.001 (the paper's fine-tuning rate) can, and so can lrr on the cosine's tail."""
    cosine = Schedule(0.1, epochs=30, steps_per_epoch=22, kind="cosine", warmup_epochs=2)
    ft = Strategy("ft", "final", "constant", Duration(20))
    assert cosine.lr(cosine.total_steps - 1) == pytest.approx(5.7e-7, rel=0.01)
    assert too_small_to_train(resolve(ft, cosine), cosine)
    assert not too_small_to_train(resolve(Strategy("ft", "final", "constant", Duration(3)), SCHEDULE), SCHEDULE)
    assert not too_small_to_train(resolve(Strategy("lrr", "final", "replay", Duration(1)), cosine), cosine)
    assert not too_small_to_train(resolve(Strategy("ft", "final", "constant", Duration(20), rate=1e-3), cosine), cosine)
    assert not too_small_to_train(resolve(Strategy("none", "final", "constant", Duration(0)), cosine), cosine)
