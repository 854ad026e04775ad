import pytest
import torch
from torch import nn

from rewind import RewindError
from rewind.metrics import flops
from rewind.models import build_model
from rewind.prune import full_masks, prune, scores
from rewind.slim import dead_filters, slimmed

SHAPES = {"mlp": (1, 8, 8), "lenet5": (1, 8, 8), "resnet20": (3, 32, 32), "vgg16": (3, 32, 32)}


def filter_pruned(name: str, fraction: float = 0.5) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model = build_model(name, SHAPES[name], 10, seed=0)
    masks = full_masks(model)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    return model, prune(scores(weights, masks, "magnitude", 0, "filter"), masks, fraction, "layer", "filter")


@pytest.mark.parametrize("name", list(SHAPES))
def test_an_unpruned_network_slims_to_itself(name):
    model = build_model(name, SHAPES[name], 10, seed=0)
    masks = full_masks(model)
    result = slimmed(model, masks, SHAPES[name])
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.flops == flops(model, masks, SHAPES[name])[1]
    assert result.removed_channels == 0


def test_mlp_by_hand():
    """64 → 300 → 100 → 10 with half of every layer's neurons dead: 150 and 50 go with the input
    columns they feed; the output layer's 5 dead neurons are the network's output and stay."""
    model, masks = filter_pruned("mlp")
    result = slimmed(model, masks, SHAPES["mlp"])
    assert result.removed_channels == 150 + 50
    assert result.params == (150 * 64 + 150) + (50 * 150 + 50) + (10 * 50 + 10)
    assert result.flops == 150 * 64 + 50 * 150 + 10 * 50


def test_lenet5_removes_the_flattened_columns_a_dead_channel_feeds():
    """conv2's channels reach fc1 through max-pooling and a flatten: 2x2 positions each on 8x8.
    conv1's dead filters still emit relu(bias), which conv2 (zero-padded) cannot fold: only those
    whose bias is not positive, whose constant is 0, go."""
    model, masks = filter_pruned("lenet5")
    bias = model.get_parameter("0.0.bias")
    d1 = len({c for c in dead_filters(masks, "0.0.weight") if bias[c] <= 0})
    d2 = len(dead_filters(masks, "0.3.weight"))
    assert 0 < d1 < len(dead_filters(masks, "0.0.weight")), "the seed gives both kinds of dead filter"
    c1, c2 = 6 - d1, 16 - d2
    dead_fc = [len(dead_filters(masks, f"{i}.weight")) for i in (1, 3, 5)]
    f1, f2 = 120 - dead_fc[0], 84 - dead_fc[1]
    result = slimmed(model, masks, SHAPES["lenet5"])
    assert result.removed_channels == d1 + d2 + dead_fc[0] + dead_fc[1]
    assert result.params == (c1 * 25 + c1) + (c2 * c1 * 25 + c2) + (f1 * c2 * 4 + f1) + (f2 * f1 + f2) + (10 * f2 + 10)
    assert result.flops == c1 * 25 * 64 + c2 * c1 * 25 * 16 + f1 * c2 * 4 + f2 * f1 + 10 * f2


def test_resnet_removes_only_channels_inside_a_block():
    """A block's first convolution feeds only its second: its dead filters go, with bn1's entries
    and conv2's input channels. Every other output meets a residual sum and stays."""
    model, masks = filter_pruned("resnet20")
    modules = dict(model.named_modules())
    expected_params, expected_flops, removed = (
        sum(p.numel() for p in model.parameters()),
        flops(model, masks, SHAPES["resnet20"])[1],
        0,
    )
    for index in range(9):
        conv1 = modules[f"blocks.{index}.conv1"]
        dead = len(dead_filters(masks, f"blocks.{index}.conv1.weight"))
        out, inputs = conv1.weight.shape[:2]
        positions = (32 // 2 ** (index // 3)) ** 2
        expected_params -= dead * inputs * 9 + 2 * dead + out * dead * 9
        expected_flops -= (dead * inputs * 9 + out * dead * 9) * positions
        removed += dead
    result = slimmed(model, masks, SHAPES["resnet20"])
    assert removed == 168 and result.removed_channels == removed
    assert (result.params, result.flops) == (expected_params, expected_flops)


def test_a_dead_filter_feeding_a_residual_sum_stays():
    model = build_model("resnet20", SHAPES["resnet20"], 10, seed=0)
    masks = full_masks(model)
    masks["blocks.0.conv2.weight"][:8] = False
    result = slimmed(model, masks, SHAPES["resnet20"])
    assert dead_filters(masks, "blocks.0.conv2.weight") == set(range(8))
    assert result.removed_channels == 0 and result.params == sum(p.numel() for p in model.parameters())


def test_vgg16_slims_every_convolution_but_the_last_one_feeding_the_output():
    model, masks = filter_pruned("vgg16")
    result = slimmed(model, masks, SHAPES["vgg16"])
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert result.removed_channels == sum(c.out_channels // 2 for c in convolutions)  # not the output fc's
    assert result.params < sum(p.numel() for p in model.parameters()) / 3


@pytest.mark.parametrize("use", ["count", "slim"])
def test_a_model_torch_fx_cannot_trace_is_one_line_naming_why(use):
    """Counting (`slimmed`) and physical slimming (`rewind.export.slim`) share one analysis."""
    from rewind.export import slim

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    model = Branchy()
    with pytest.raises(RewindError, match="cannot trace the model to find removable filters") as caught:
        (slimmed if use == "count" else slim)(model, full_masks(model), (4,))
    assert "\n" not in str(caught.value)
