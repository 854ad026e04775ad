import torch

from rewind.data import load_digits
from rewind.models import build_model
from rewind.prune import full_masks, prune, scores
from rewind.train import SGD, shuffle_seed, steps_per_epoch, train

DATA = load_digits(0.25, seed=0)
S = steps_per_epoch(len(DATA.y_train), 64)  # steps an epoch at batch 64


def per_step(epoch_rates):
    """One rate per step from one per epoch."""
    return [rate for rate in epoch_rates for _ in range(S)]


def run(rates, masks_fraction=0.0, seed=0, labels=None):
    model = build_model("mlp", DATA.input_shape, 10, seed=seed)
    masks = full_masks(model)
    if masks_fraction:
        weights = {n: p.detach() for n, p in model.named_parameters()}
        masks = prune(scores(weights, masks, "magnitude", 0), masks, masks_fraction, "global")
    seen = []
    history = train(
        model,
        DATA,
        per_step(rates),
        masks,
        SGD(64, 0.9, 1e-4),
        seed,
        start_step=labels[0] * S if labels else 0,
        on_epoch=lambda record, m, _: seen.append(record.epoch),
    )
    return model, masks, history, seen


def test_training_learns_and_calls_back_every_epoch():
    _, _, history, seen = run([0.1] * 5)
    assert seen == [0, 1, 2, 3, 4]
    assert history[-1].train_loss < history[0].train_loss
    assert history[-1].train_accuracy > 0.9
    assert [r.lr for r in history] == [0.1] * 5


def test_same_seed_is_bit_identical_and_another_seed_is_not():
    a, _, ha, _ = run([0.1, 0.05, 0.01], masks_fraction=0.5)
    b, _, hb, _ = run([0.1, 0.05, 0.01], masks_fraction=0.5)
    c, _, _, _ = run([0.1, 0.05, 0.01], masks_fraction=0.5, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert [r.train_loss for r in ha] == [r.train_loss for r in hb]
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def test_masked_training_keeps_pruned_weights_zero():
    model, masks, _, _ = run([0.1] * 4, masks_fraction=0.8)
    for name, mask in masks.items():
        assert torch.count_nonzero(model.get_parameter(name)[~mask]) == 0


def test_epoch_labels_decide_the_data_order():
    # Replaying epochs 2..3 from the weights after epoch 2 reproduces the full run exactly.
    full, _, _, _ = run([0.1, 0.1, 0.05, 0.05])
    model = build_model("mlp", DATA.input_shape, 10, seed=0)
    masks = full_masks(model)
    train(model, DATA, per_step([0.1, 0.1]), masks, SGD(64, 0.9, 1e-4), 0)
    assert shuffle_seed(0, 2) != shuffle_seed(0, 3) != shuffle_seed(1, 2)
    replay = build_model("mlp", DATA.input_shape, 10, seed=0)
    replay.load_state_dict(model.state_dict())
    # Momentum restarts, so the weights differ from the uninterrupted run, but the data order
    # is the replayed one: a second replay is bit-identical to the first.
    again = build_model("mlp", DATA.input_shape, 10, seed=0)
    again.load_state_dict(model.state_dict())
    for m in (replay, again):
        train(m, DATA, per_step([0.05, 0.05]), masks, SGD(64, 0.9, 1e-4), 0, start_step=2 * S)
    assert all(
        torch.equal(x, y) for x, y in zip(replay.state_dict().values(), again.state_dict().values(), strict=True)
    )
    assert not all(
        torch.equal(x, y) for x, y in zip(replay.state_dict().values(), full.state_dict().values(), strict=True)
    )


def test_resume_after_any_epoch_is_bit_identical_to_an_uninterrupted_run():
    from rewind.train import Resume

    rates = [0.1, 0.1, 0.05, 0.01, 0.01]
    saved = {}
    full = build_model("mlp", DATA.input_shape, 10, seed=0)
    masks = full_masks(full)

    def keep(record, model, optimizer):
        saved[record.epoch + 1] = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict())

    train(full, DATA, per_step(rates), masks, SGD(64, 0.9, 1e-4), 0, on_epoch=keep)
    for done in (1, 3, 4):
        weights, momentum = saved[done]
        resumed = build_model("mlp", DATA.input_shape, 10, seed=0)
        resumed.load_state_dict(weights)
        history = train(resumed, DATA, per_step(rates), masks, SGD(64, 0.9, 1e-4), 0, resume=Resume(done * S, momentum))
        assert [r.epoch for r in history] == list(range(done, len(rates)))
        for (name, a), b in zip(resumed.state_dict().items(), full.state_dict().values(), strict=True):
            assert torch.equal(a, b), (done, name)


def test_replaying_epochs_with_restored_momentum_continues_the_run_exactly():
    """The paper code's retraining: the weights and the momentum saved after epoch 2, epochs 2..3
    replayed with their labels: bit-identical to the uninterrupted run (fresh momentum is not)."""
    rates = [0.1, 0.1, 0.05, 0.05]
    full, _, _, _ = run(rates)
    saved = {}
    model = build_model("mlp", DATA.input_shape, 10, seed=0)
    train(
        model,
        DATA,
        per_step(rates[:2]),
        full_masks(model),
        SGD(64, 0.9, 1e-4),
        0,
        on_epoch=lambda r, m, o: saved.update(o=o),
    )
    restored = build_model("mlp", DATA.input_shape, 10, seed=0)
    restored.load_state_dict(model.state_dict())
    momentum = saved["o"].state_dict()
    train(
        restored,
        DATA,
        per_step(rates[2:]),
        full_masks(restored),
        SGD(64, 0.9, 1e-4),
        0,
        start_step=2 * S,
        momentum=momentum,
    )
    for (name, a), b in zip(restored.state_dict().items(), full.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_restored_momentum_of_pruned_weights_is_zeroed():
    from rewind.optim import MaskedSGD

    model = build_model("mlp", DATA.input_shape, 10, seed=0)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    masks = prune(scores(weights, full_masks(model), "magnitude", 0), full_masks(model), 0.7, "global")
    momentum = {name: torch.ones_like(p) for name, p in model.named_parameters()}
    optimizer = MaskedSGD(model, masks, 0.9, 0.0, False)
    optimizer.load_state_dict(momentum)
    state = optimizer.state_dict()
    for name, mask in masks.items():
        assert torch.equal(state[name], mask.float()), name
    assert torch.equal(state["1.bias"], momentum["1.bias"]), "unpruned parameters keep theirs"


def test_divergence_stops_with_the_epoch_and_keeps_the_last_good_epoch():
    import pytest

    from rewind import RewindError

    model = build_model("mlp", DATA.input_shape, 10, seed=0)
    good = []
    with pytest.raises(RewindError, match=r"training diverged: loss is (nan|inf) in epoch 2 at steps"):
        train(
            model,
            DATA,
            per_step([0.1, 1e30, 0.1]),
            full_masks(model),
            SGD(64, 0.9, 0.0),
            0,
            on_epoch=lambda record, m, _: good.append(record.epoch),
        )
    assert good == [0], "the callback (which saves progress) saw only the good epoch"


def options_run(name="mlp", precision="fp32", channels_last=False, augment=None):
    """Two epochs of a half-pruned network on digits (1x8x8 images) with the loop's options."""
    model = build_model(name, DATA.input_shape, 10, seed=0)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    masks = prune(scores(weights, full_masks(model), "magnitude", 0), full_masks(model), 0.5, "global")
    history = train(
        model, DATA, per_step([0.1, 0.1]), masks, SGD(64, 0.9, 1e-4), 0, augment=augment, precision=precision
    )
    return model, masks, history


def test_bf16_trains_with_fp32_weights_and_keeps_pruned_weights_zero():
    fp32, _, fp32_history = options_run()
    bf16, masks, history = options_run(precision="bf16")
    assert all(p.dtype == torch.float32 for p in bf16.parameters()), "master weights stay fp32"
    for name, mask in masks.items():
        assert torch.count_nonzero(bf16.get_parameter(name)[~mask]) == 0
    assert history[-1].train_loss < history[0].train_loss
    # autocast really ran: bf16 rounding changes the numbers, but not by much
    assert history[-1].train_loss != fp32_history[-1].train_loss
    assert abs(history[-1].train_accuracy - fp32_history[-1].train_accuracy) < 0.05
    assert not torch.equal(bf16.state_dict()["1.weight"], fp32.state_dict()["1.weight"])


def test_channels_last_is_a_layout_not_a_different_model():
    plain, _, plain_history = options_run("lenet5")
    last, masks, history = options_run("lenet5", channels_last=True)
    assert last.get_parameter("0.0.weight").is_contiguous(memory_format=torch.channels_last)
    assert list(last.state_dict()) == list(plain.state_dict())
    for name, mask in masks.items():
        assert torch.count_nonzero(last.get_parameter(name)[~mask]) == 0
    for (name, a), b in zip(last.state_dict().items(), plain.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert abs(history[-1].train_loss - plain_history[-1].train_loss) < 1e-4


def test_augmentation_is_applied_to_every_training_batch():
    seen = []

    def augment(x, generator):
        seen.append(x.shape[0])
        return x.flip(-1)

    augmented, _, _ = options_run(augment=augment)
    plain, _, _ = options_run()
    assert sum(seen) == 2 * len(DATA.y_train), "every example of both epochs went through it"
    assert not torch.equal(augmented.state_dict()["1.weight"], plain.state_dict()["1.weight"])


def test_starting_mid_epoch_from_the_weights_and_momentum_kept_there_continues_exactly():
    """An iteration-level rewind point: the dense run keeps its state after step k (mid-epoch,
    augmented batches too); a run from step k with the rates from k ends where the dense run did."""
    from rewind.data import random_crop_flip

    rates = per_step([0.1, 0.1, 0.05])
    k = S + S // 2
    kept = {}

    def keep(step, model, optimizer):
        kept[step] = ({n: t.clone() for n, t in model.state_dict().items()}, optimizer.state_dict())

    lenet = ("lenet5", DATA.input_shape, 10)
    dense = build_model(*lenet, seed=0)
    options = {"augment": random_crop_flip}
    train(
        dense,
        DATA,
        rates,
        full_masks(dense),
        SGD(64, 0.9, 1e-4),
        0,
        checkpoint_steps={k},
        on_checkpoint=keep,
        **options,
    )
    weights, momentum = kept[k]
    replay = build_model(*lenet, seed=0)
    replay.load_state_dict(weights)
    history = train(
        replay, DATA, rates[k:], full_masks(replay), SGD(64, 0.9, 1e-4), 0, start_step=k, momentum=momentum, **options
    )
    assert [(r.epoch, r.steps) for r in history] == [(1, S - S // 2), (2, S)]
    for (name, a), b in zip(replay.state_dict().items(), dense.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_run_that_starts_mid_epoch_resumes_bit_identically():
    from rewind.train import Resume

    start = S // 3
    rates = per_step([0.1, 0.05, 0.01])[start:]
    saved = {}
    full = build_model("mlp", DATA.input_shape, 10, seed=0)
    masks = full_masks(full)

    def keep(record, model, optimizer):
        saved[record.epoch] = ({k: v.clone() for k, v in model.state_dict().items()}, optimizer.state_dict())

    first = train(full, DATA, rates, masks, SGD(64, 0.9, 1e-4), 0, start_step=start, on_epoch=keep)
    weights, momentum = saved[0]
    resumed = build_model("mlp", DATA.input_shape, 10, seed=0)
    resumed.load_state_dict(weights)
    rest = train(
        resumed, DATA, rates, masks, SGD(64, 0.9, 1e-4), 0, start_step=start, resume=Resume(first[0].steps, momentum)
    )
    assert [r.epoch for r in rest] == [1, 2]
    assert all(
        torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), full.state_dict().values(), strict=True)
    )
