"""Model registry: a name maps to a builder of (input shape, number of classes) -> nn.Module.

Builders take the input shape so the same name works on digits (1x8x8), MNIST (1x28x28)
and CIFAR (3x32x32). Which parameters are prunable is decided here, once: the weights of
convolutional and linear layers; biases and batch-norm parameters never are.
"""

from collections.abc import Callable
from math import prod

import torch
from torch import nn

from rewind import RewindError

Builder = Callable[[tuple[int, ...], int], nn.Module]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder

    return add


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """A freshly initialised model; the same seed always gives the same weights."""
    if name not in MODELS:
        raise RewindError(f"model.name: unknown model {name!r}; known: {sorted(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](tuple(input_shape), num_classes)


def prunable_names(model: nn.Module) -> list[str]:
    """Names of the weights that pruning may remove: conv and linear weights, in model order."""
    return [
        f"{module_name}.weight" if module_name else "weight"
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]


@register("mlp")
def lenet_300_100(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-300-100: the fully connected network of the lottery-ticket and rewinding papers."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(prod(input_shape), 300),
        nn.ReLU(),
        nn.Linear(300, 100),
        nn.ReLU(),
        nn.Linear(100, num_classes),
    )


@register("lenet5")
def lenet5(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5 with padded convolutions, so it also fits 8x8 digits."""
    channels, height, width = input_shape
    features = nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    flat = 16 * (height // 4) * (width // 4)
    return nn.Sequential(
        features,
        nn.Linear(flat, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
