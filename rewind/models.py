"""Model registry: a name maps to a builder of (input shape, number of classes) -> nn.Module.

Builders take the input shape so the same name works on digits (1x8x8), MNIST (1x28x28)
and CIFAR (3x32x32). Registered: mlp (LeNet-300-100), lenet5, resnet20/56/110 (the CIFAR
ResNets of He et al.) and vgg16 (CIFAR VGG-16 with batch norm); a name `package.module:function`
builds a model of your own (rewind.plugins). Which parameters are prunable is decided here, once:
the weights of convolutional and linear layers; biases and batch-norm parameters never are.
"""

from collections.abc import Callable
from math import prod

import torch
from torch import nn

from rewind import RewindError
from rewind.plugins import is_import_path, load_callable

Builder = Callable[[tuple[int, ...], int], nn.Module]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder

    return add


def builder(name: str) -> Builder:
    """The registry's builder for `name`, or the function a `package.module:function` name imports."""
    if is_import_path(name):
        return load_callable(name)
    if name not in MODELS:
        raise RewindError(f"unknown model {name!r}; known: {sorted(MODELS)}, or package.module:function")
    return MODELS[name]


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int) -> nn.Module:
    """A freshly initialised model; the same seed always gives the same weights."""
    build = builder(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _checked(name, build(tuple(input_shape), num_classes))


def architecture(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model's structure without memory for its tensors (on the meta device): the names and
    shapes of its parameters, in milliseconds even for VGG-16."""
    build = builder(name)
    with torch.device("meta"):
        return _checked(name, build(tuple(input_shape), num_classes))


def _checked(name: str, model: object) -> nn.Module:
    """A builder's result, refused unless it is a module with something to prune."""
    if not isinstance(model, nn.Module):
        raise RewindError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    if not prunable_names(model):
        raise RewindError(f"model {name!r} has no conv or linear layer: nothing to prune")
    return model


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


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (He et al. 2016, Fig. 2).

    Where the block changes width or resolution, the shortcut is a 1x1 convolution with batch
    norm (option B), as in the paper's TensorFlow code and open_lth; elsewhere it is the identity.
    """

    def __init__(self, f_in: int, f_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or f_in != f_out:
            self.shortcut = nn.Sequential(nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False), nn.BatchNorm2d(f_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNet of He et al. (2016, section 4.2): a 3x3 convolution, three stages of
    `blocks` residual blocks at 16, 32 and 64 channels (stride 2 between stages), global average
    pooling and one linear layer: 6 * blocks + 2 weighted layers."""

    def __init__(self, in_channels: int, blocks: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers, f_in = [], width
        for stage in range(3):
            f_out = width * 2**stage
            for index in range(blocks):
                layers.append(BasicBlock(f_in, f_out, stride=2 if stage > 0 and index == 0 else 1))
                f_in = f_out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(f_in, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def _kaiming_init(model: nn.Module) -> None:
    """He-normal weights for convolutions and linear layers, zero biases (open_lth's kaiming_normal)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _resnet(depth: int) -> Builder:
    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return CifarResNet(input_shape[0], (depth - 2) // 6, num_classes)

    build.__doc__ = f"ResNet-{depth} for CIFAR: {(depth - 2) // 6} blocks per stage."
    return build


register("resnet20")(_resnet(20))
register("resnet56")(_resnet(56))
register("resnet110")(_resnet(110))

VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


@register("vgg16")
def vgg16(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """VGG-16 for CIFAR with batch norm and a single linear layer (open_lth's cifar_vgg_16, the
    paper's VGG-16): 13 3x3 convolutions, four 2x2 max-pools, global average pooling."""
    channels, height, width = input_shape
    if min(height, width) < 16:
        raise RewindError(f"vgg16 pools 16-fold and needs inputs of at least 16x16, got {height}x{width}")
    layers: list[nn.Module] = []
    for spec in VGG16_PLAN:
        if spec == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, spec, 3, padding=1), nn.BatchNorm2d(spec), nn.ReLU()]
            channels = spec
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    _kaiming_init(model)
    return model
