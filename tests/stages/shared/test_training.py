"""stages.train: params.yaml's loop options reach the training loop of every training stage."""

import torch

from rewind.data import random_crop_flip
from rewind.models import build_model
from stages.shared.files import place_for_training
from stages.shared.training import batch_options
from tests.conftest import params_with


def test_batch_options_follow_params(tmp_path):
    assert batch_options(params_with(tmp_path)) == {"augment": None, "precision": "fp32"}
    assert batch_options(params_with(tmp_path, augment=True, precision="bf16")) == {
        "augment": random_crop_flip,
        "precision": "bf16",
    }


def test_channels_last_changes_the_layout_not_the_weights(tmp_path):
    model = build_model("resnet20", (3, 32, 32), 10, seed=0)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    placed = place_for_training(model, params_with(tmp_path, channels_last=True), torch.device("cpu"))
    assert placed.get_parameter("conv.weight").is_contiguous(memory_format=torch.channels_last)
    assert list(placed.state_dict()) == list(before)
    assert all(torch.equal(placed.state_dict()[name], t) for name, t in before.items())
    plain = place_for_training(build_model("resnet20", (3, 32, 32), 10, seed=0), params_with(tmp_path), "cpu")
    assert plain.get_parameter("conv.weight").is_contiguous()
