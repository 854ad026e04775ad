import pytest
import torch

from rewind import RewindError
from rewind.models import build_model, prunable_names


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_models_fit_every_input_shape(name, shape):
    model = build_model(name, shape, 10, seed=0)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_lenet_300_100_has_the_published_layer_sizes():
    model = build_model("mlp", (1, 28, 28), 10, seed=0)
    assert [tuple(model.get_parameter(n).shape) for n in prunable_names(model)] == [(300, 784), (100, 300), (10, 100)]


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("lenet5", (1, 8, 8), 10, seed=5)
    after = torch.rand(1)
    b = build_model("lenet5", (1, 8, 8), 10, seed=5)
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_prunable_names_are_conv_and_linear_weights_only():
    names = prunable_names(build_model("lenet5", (1, 8, 8), 10, seed=0))
    assert names and all(n.endswith(".weight") for n in names)
    assert len(names) == 5


def test_unknown_model_names_the_key():
    with pytest.raises(RewindError, match="model.name: unknown model 'resnet9000'"):
        build_model("resnet9000", (1, 8, 8), 10, seed=0)
