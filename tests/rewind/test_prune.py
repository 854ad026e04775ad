import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from rewind import RewindError
from rewind.models import build_model, prunable_names
from rewind.prune import apply_masks, density, fraction_for_density, full_masks, prune, scores, sparsity


def mlp():
    return build_model("mlp", (1, 8, 8), 10, seed=3)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def torch_global_masks(model: nn.Module, amounts: list[float]) -> dict[str, torch.Tensor]:
    """The oracle: torch.nn.utils.prune, applied round after round on the same weights."""
    oracle = build_model("mlp", (1, 8, 8), 10, seed=3)
    oracle.load_state_dict(model.state_dict())
    targets = [(oracle.get_submodule(n.rsplit(".", 1)[0]), "weight") for n in prunable_names(oracle)]
    for amount in amounts:
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=amount)
    return {name: module.weight_mask.bool() for name, (module, _) in zip(prunable_names(oracle), targets, strict=True)}


@pytest.mark.parametrize("amounts", [[0.2], [0.9], [0.2, 0.2, 0.2], [0.5, 0.5, 0.5, 0.5]])
def test_global_magnitude_equals_torch_global_unstructured(amounts):
    model = mlp()
    masks = full_masks(model)
    for amount in amounts:
        masks = prune(scores(weights(model), masks, "magnitude", seed=0), masks, amount, "global")
    expected = torch_global_masks(model, amounts)
    assert masks.keys() == expected.keys()
    for name in masks:
        assert torch.equal(masks[name], expected[name]), name


def test_sparsity_is_exact():
    model = mlp()
    masks = full_masks(model)
    total = sum(m.numel() for m in masks.values())
    masks = prune(scores(weights(model), masks, "magnitude", 0), masks, 0.2, "global")
    assert sum(int(m.sum()) for m in masks.values()) == total - round(0.2 * total)
    masks = prune(scores(weights(model), masks, "magnitude", 0), masks, fraction_for_density(masks, 0.01), "global")
    assert density(masks) == pytest.approx(0.01, abs=1 / total)
    assert sparsity(masks) == pytest.approx(0.99, abs=1 / total)


def test_layerwise_prunes_each_layer_by_the_fraction():
    model = mlp()
    masks = full_masks(model)
    masks = prune(scores(weights(model), masks, "magnitude", 0), masks, 0.75, "layer")
    for name, mask in masks.items():
        assert int(mask.sum()) == mask.numel() - round(0.75 * mask.numel()), name
        w = model.get_parameter(name).detach().abs()
        assert w[mask].min() >= w[~mask].max(), "kept weights must be the largest of their layer"


def test_random_pruning_is_seeded_and_ignores_magnitude():
    model = mlp()
    masks = full_masks(model)
    a = prune(scores(weights(model), masks, "random", seed=1), masks, 0.5, "global")
    b = prune(scores(weights(model), masks, "random", seed=1), masks, 0.5, "global")
    c = prune(scores(weights(model), masks, "random", seed=2), masks, 0.5, "global")
    magnitude = prune(scores(weights(model), masks, "magnitude", 0), masks, 0.5, "global")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)
    assert any(not torch.equal(a[n], magnitude[n]) for n in a)
    assert density(a) == pytest.approx(0.5, abs=1e-5)


def test_equal_scores_are_broken_by_position_on_any_thread_count():
    # torch.rand draws 24-bit floats, so tens of thousands of random scores collide; so can
    # magnitudes. Ties must not be broken arbitrarily (topk does, differently per run on several
    # threads): the earlier position is removed first, every time.
    masks = {"w": torch.ones(200_000, dtype=torch.bool)}
    scored = {"w": (torch.arange(200_000) % 7).float()}  # 7 values, each ~28,571 times
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results += [prune(scored, masks, 0.3, "global")["w"] for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results)
    removed = ~results[0]
    assert int(removed.sum()) == 60_000
    zeros = (torch.arange(200_000) % 7 == 0).nonzero().squeeze(1)  # 28,572 zeros: all removed
    ones = (torch.arange(200_000) % 7 == 1).nonzero().squeeze(1)  # 31,428 of the ones, lowest positions first
    assert removed[zeros].all()
    assert removed[ones[: 60_000 - len(zeros)]].all() and not removed[ones[60_000 - len(zeros) :]].any()


def test_random_pruning_does_not_depend_on_the_order_of_the_masks():
    # safetensors returns tensors in a different order in every process: the masks must not change.
    model = mlp()
    masks = full_masks(model)
    backwards = dict(reversed(masks.items()))
    a = prune(scores(weights(model), masks, "random", seed=1000), masks, 0.5, "global")
    b = prune(scores(weights(model), backwards, "random", seed=1000), backwards, 0.5, "global")
    assert list(masks) != list(backwards)
    assert all(torch.equal(a[n], b[n]) for n in masks)


def test_pruned_weights_never_come_back_in_later_rounds():
    model = mlp()
    masks = full_masks(model)
    first = prune(scores(weights(model), masks, "magnitude", 0), masks, 0.5, "global")
    # Make the pruned weights huge: they must still not be revived, only survivors are scored.
    with torch.no_grad():
        for name, mask in first.items():
            model.get_parameter(name)[~mask] = 1e6
    second = prune(scores(weights(model), first, "magnitude", 0), first, 0.5, "global")
    for name in first:
        assert not (second[name] & ~first[name]).any()


def test_biases_are_never_prunable_and_exclude_globs_work():
    model = mlp()
    assert all(name.endswith("weight") for name in full_masks(model))
    assert "5.weight" not in full_masks(model, exclude=["5.*"])
    assert len(full_masks(model, exclude=["5.*"])) == len(full_masks(model)) - 1


def test_apply_masks_writes_positive_zero():
    model = mlp()
    masks = prune(scores(weights(model), full_masks(model), "magnitude", 0), full_masks(model), 0.5, "global")
    apply_masks(model, masks)
    for name, mask in masks.items():
        pruned = model.get_parameter(name)[~mask]
        assert torch.equal(pruned, torch.zeros_like(pruned))
        assert not torch.signbit(pruned).any()


def test_bad_fraction_and_unknown_method_are_refused():
    model = mlp()
    masks = full_masks(model)
    with pytest.raises(RewindError, match="fraction"):
        prune(scores(weights(model), masks, "magnitude", 0), masks, 1.0, "global")
    with pytest.raises(RewindError, match="unknown pruning method .l2."):
        scores(weights(model), masks, "l2", 0)
    with pytest.raises(RewindError, match="unknown pruning scope .row."):
        prune(scores(weights(model), masks, "magnitude", 0), masks, 0.5, "row")


# --- structured (filter) pruning -------------------------------------------------------------


def resnet20():
    return build_model("resnet20", (3, 8, 8), 10, seed=1)


def test_filter_pruning_equals_torch_ln_structured_per_layer():
    model = resnet20()
    masks = full_masks(model, exclude=["fc.weight"])
    filters = prune(scores(weights(model), masks, "magnitude", 0, "filter"), masks, 0.3, "layer", "filter")
    for name, mask in filters.items():
        module = build_model("resnet20", (3, 8, 8), 10, seed=1).get_submodule(name.rsplit(".", 1)[0])
        torch_prune.ln_structured(module, "weight", amount=0.3, n=1, dim=0)
        assert mask.shape == module.weight_mask.shape and mask.dtype == torch.bool
        assert torch.equal(mask, module.weight_mask.bool()), name


def test_filter_masks_remove_whole_filters_and_later_rounds_only_remove_survivors():
    model = resnet20()
    masks = full_masks(model, exclude=["fc.weight", "conv.weight"])
    first = prune(scores(weights(model), masks, "magnitude", 0, "filter"), masks, 0.5, "layer", "filter")
    with torch.no_grad():  # make removed filters huge: they must stay removed, only survivors are scored
        for name, mask in first.items():
            model.get_parameter(name)[~mask] = 1e6
    second = prune(scores(weights(model), first, "magnitude", 0, "filter"), first, 0.5, "layer", "filter")
    for name, mask in second.items():
        per_filter = mask.flatten(1)
        assert (per_filter.all(1) | ~per_filter.any(1)).all(), f"{name}: a filter is kept or removed whole"
        channels = mask.shape[0]
        alive_before = int(first[name].flatten(1).any(1).sum())
        assert alive_before == channels - round(0.5 * channels)
        assert int(per_filter.any(1).sum()) == alive_before - round(0.5 * alive_before)
        assert not (mask & ~first[name]).any()


def test_random_filter_pruning_is_seeded_and_differs_from_l1():
    model = resnet20()
    masks = full_masks(model, exclude=["fc.weight"])

    def filters(method, seed):
        return prune(scores(weights(model), masks, method, seed, "filter"), masks, 0.5, "layer", "filter")

    a, b, c, l1 = filters("random", 1), filters("random", 1), filters("random", 2), filters("magnitude", 0)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)
    assert any(not torch.equal(a[n], l1[n]) for n in a)
    with pytest.raises(RewindError, match="unknown pruning granularity 'channel'"):
        prune(scores(weights(model), masks, "magnitude", 0), masks, 0.5, "layer", "channel")


def test_filter_masks_keep_whole_channels_at_zero_through_training():
    from rewind.data import Dataset
    from rewind.train import SGD, train

    model = resnet20()
    masks = full_masks(model, exclude=["fc.weight"])
    masks = prune(scores(weights(model), masks, "magnitude", 0, "filter"), masks, 0.25, "layer", "filter")
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8, generator=generator), torch.randint(0, 10, (32,), generator=generator)
    before = weights(model)
    train(model, Dataset(x, y, x, y, 10), [0.1, 0.1], masks, SGD(batch_size=16, weight_decay=5e-4), seed=0)
    for name, mask in masks.items():
        weight = model.get_parameter(name).detach()
        removed = ~mask.flatten(1).any(1)
        assert removed.any(), name
        assert torch.equal(weight[removed], torch.zeros_like(weight[removed])), f"{name}: removed filters stay zero"
        assert not torch.equal(weight[~removed], before[name][~removed]), f"{name}: kept filters are trained"
