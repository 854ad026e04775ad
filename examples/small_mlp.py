"""An example model of your own: a small fully connected network for any input shape.

Use it as `model.name: plugins.small_mlp:build` (after `cp examples/*.py plugins/`).
"""

from math import prod

from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Two hidden layers of 64; rewind prunes the three linear layers' weights."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(prod(input_shape), 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
