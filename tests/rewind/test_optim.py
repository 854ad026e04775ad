import pytest
import torch
import torch.nn.functional as F

from rewind.models import build_model
from rewind.optim import MaskedSGD
from rewind.prune import full_masks, prune, scores


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)


@pytest.mark.parametrize("nesterov", [False, True])
def test_update_is_bit_identical_to_torch_sgd(nesterov):
    ours, theirs = (build_model("mlp", (1, 8, 8), 10, seed=0) for _ in range(2))
    sgd = MaskedSGD(ours, {}, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    reference = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    for step in range(25):
        lr = 0.1 if step < 10 else 0.01
        for group in reference.param_groups:
            group["lr"] = lr
        x, y = batch(step)
        sgd.zero_grad()
        F.cross_entropy(ours(x), y).backward()
        sgd.step(lr)
        reference.zero_grad()
        F.cross_entropy(theirs(x), y).backward()
        reference.step()
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_pruned_weights_stay_exactly_zero_under_momentum_and_weight_decay():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    masks = prune(scores(weights, full_masks(model), "magnitude", 0), full_masks(model), 0.9, "global")
    sgd = MaskedSGD(model, masks, momentum=0.9, weight_decay=1e-2, nesterov=False)
    for step in range(300):
        x, y = batch(step)
        sgd.zero_grad()
        F.cross_entropy(model(x), y).backward()
        sgd.step(0.5)
    survivors_alive = 0
    for name, mask in masks.items():
        param = model.get_parameter(name)
        assert torch.count_nonzero(param[~mask]) == 0, name
        assert not torch.signbit(param[~mask]).any(), f"{name}: pruned weights are +0.0, so checkpoints are canonical"
        assert torch.count_nonzero(sgd.state_dict()[name][~mask]) == 0, name
        survivors_alive += int(torch.count_nonzero(param[mask]))
    assert survivors_alive > 0.99 * sum(int(m.sum()) for m in masks.values()), "survivors must keep training"


def test_state_round_trips_and_rejects_unknown_names():
    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    sgd = MaskedSGD(model, {}, momentum=0.9, weight_decay=0.0, nesterov=False)
    x, y = batch(0)
    F.cross_entropy(model(x), y).backward()
    sgd.step(0.1)
    other = MaskedSGD(model, {}, momentum=0.9, weight_decay=0.0, nesterov=False)
    other.load_state_dict(sgd.state_dict())
    assert all(torch.equal(other.state_dict()[n], t) for n, t in sgd.state_dict().items())
    with pytest.raises(KeyError, match="nope"):
        other.load_state_dict({"nope": torch.zeros(1)})
