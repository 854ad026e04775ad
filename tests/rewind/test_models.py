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
    with pytest.raises(RewindError, match="unknown model 'resnet9000'"):
        build_model("resnet9000", (1, 8, 8), 10, seed=0)


# Published sizes: He et al. 2016 Table 6 (0.27M, 0.85M, 1.7M, with parameter-free shortcuts; the
# two 1x1 projection shortcuts used here add 2,752), Li et al. 2017 Table 1 (VGG-16, 1.5e7).
@pytest.mark.parametrize(
    ("name", "published"),
    [("resnet20", 0.27e6), ("resnet56", 0.85e6), ("resnet110", 1.7e6), ("vgg16", 14.7e6)],
)
def test_paper_models_have_the_published_parameter_counts(name, published):
    model = build_model(name, (3, 32, 32), 10, seed=0)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(published, rel=0.02)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(("name", "convs"), [("resnet20", 19 + 2), ("resnet56", 55 + 2), ("resnet110", 109 + 2)])
def test_resnets_have_6n_plus_2_layers_and_two_projection_shortcuts(name, convs):
    names = prunable_names(build_model(name, (3, 32, 32), 10, seed=0))
    assert len(names) == convs + 1, "every conv (projections included) and the final linear layer"
    assert names[0] == "conv.weight" and names[-1] == "fc.weight"
    assert sum("shortcut" in n for n in names) == 2


def test_resnet_fits_mnist_and_digits_shapes_and_vgg_refuses_tiny_inputs():
    assert build_model("resnet20", (1, 28, 28), 10, seed=0)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert build_model("resnet20", (1, 8, 8), 10, seed=0)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(RewindError, match="vgg16 .* at least 16x16, got 8x8"):
        build_model("vgg16", (1, 8, 8), 10, seed=0)
