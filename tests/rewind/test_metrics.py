import pytest
import torch
from torch import nn

from rewind.metrics import accuracy_and_loss, evaluate, relative_distance


class Fixed(nn.Module):
    """Predicts class 0 for every input, with a known loss."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(4, 2))
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        return torch.tensor([[2.0, 0.0, 0.0, 0.0]]).expand(len(x), 4)


def test_accuracy_and_loss_on_known_predictions():
    x, y = torch.zeros(4, 2), torch.tensor([0, 0, 1, 2])
    accuracy, loss = accuracy_and_loss(Fixed(), x, y)
    assert accuracy == 0.5
    p0 = torch.softmax(torch.tensor([2.0, 0, 0, 0]), 0)
    assert loss == pytest.approx(float(-(2 * p0[0].log() + p0[1].log() + p0[2].log()) / 4))


def test_sparsity_remaining_and_compression_count_biases_as_unpruned():
    model = Fixed()
    mask = torch.tensor([[True, False], [False, False], [True, True], [False, False]])
    result = evaluate(model, {"weight": mask}, torch.zeros(2, 2), torch.tensor([0, 1]))
    assert result.sparsity == pytest.approx(5 / 8)
    assert result.total_params == 12
    assert result.remaining_params == 12 - 5
    assert result.compression == pytest.approx(12 / 7)
    assert result.network_sparsity == pytest.approx(5 / 12), "of every parameter, the bias included"
    assert "slimmed_params" not in result.as_dict(), "slimming is asked for (filter pruning) or absent"


def test_evaluation_of_a_filter_pruned_network_counts_it_slimmed():
    from rewind.models import build_model
    from rewind.prune import full_masks

    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    masks = full_masks(model)
    masks["3.weight"][:60] = False  # 60 of the second layer's 100 neurons
    x, y = torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 2])
    result = evaluate(model, masks, x, y, slim=True)
    assert result.slimmed_params == result.total_params - 60 * 300 - 60 - 10 * 60
    assert result.slimmed_flops == result.dense_flops - 60 * 300 - 10 * 60
    assert result.flops == result.dense_flops - 60 * 300, "masked: the fc's input columns still count"


def test_flops_count_surviving_multiplications_per_output_position():
    from rewind.metrics import flops
    from rewind.models import build_model

    model = build_model("mlp", (1, 8, 8), 10, seed=0)
    masks = {
        name: torch.ones_like(p, dtype=torch.bool) for name, p in model.named_parameters() if name.endswith("weight")
    }
    dense = 64 * 300 + 300 * 100 + 100 * 10
    assert flops(model, masks, (1, 8, 8)) == (dense, dense)
    masks["1.weight"][:, :32] = False
    assert flops(model, masks, (1, 8, 8)) == (dense - 300 * 32, dense)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1))
    conv_masks = {"0.weight": torch.ones(4, 1, 3, 3, dtype=torch.bool)}
    conv_masks["0.weight"][0] = False
    assert flops(conv, conv_masks, (1, 5, 5)) == (3 * 9 * 25, 4 * 9 * 25)


def test_relative_distance_is_the_l2_norm_of_the_difference_over_the_references():
    reference = {"a.weight": torch.tensor([3.0, 0.0]), "a.bias": torch.tensor([4.0]), "steps": torch.tensor(7)}
    moved = {"a.weight": torch.tensor([3.0, 0.3]), "a.bias": torch.tensor([4.4]), "steps": torch.tensor(9)}
    assert relative_distance(moved, reference) == pytest.approx(0.5 / 5.0)  # integers are no weights
    assert relative_distance(reference, reference) == 0.0
