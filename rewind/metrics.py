"""What a pruned network is worth: accuracy and loss, and what it costs: parameters, sparsity
and FLOPs, as masked and with its dead filters physically removed (`rewind.slim`); and how far
apart two sets of weights are (how different two strategies' start weights really are)."""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rewind.data import batches
from rewind.prune import Masks, kept, total
from rewind.slim import slimmed


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    sparsity: float  # of the weights the masks cover (prunable, not excluded)
    network_sparsity: float  # of every parameter, biases, norms and excluded layers included
    remaining_params: int
    total_params: int
    compression: float
    flops: int
    dense_flops: int
    # With removable dead filters and the input channels they feed removed; None unless asked for.
    slimmed_params: int | None = None
    slimmed_flops: int | None = None

    def as_dict(self) -> dict[str, float | int]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@torch.no_grad()
def accuracy_and_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy over (x, y), in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    correct, loss_sum = 0, 0.0
    for xb, yb in batches(x, y, batch_size):
        xb, yb = xb.to(device), yb.to(device)
        logits = model(xb)
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return correct / len(y), loss_sum / len(y)


def evaluate(model: nn.Module, masks: Masks, x: torch.Tensor, y: torch.Tensor, slim: bool = False) -> Evaluation:
    """Accuracy and loss on (x, y), with sparsity over the masked weights and over the whole
    network, the compression ratio over all parameters (total / remaining), FLOPs, and with
    `slim` (for filter pruning; it needs a model torch.fx can trace) the parameters and FLOPs
    left once dead filters are physically removed."""
    accuracy, loss = accuracy_and_loss(model, x, y)
    all_params = sum(p.numel() for p in model.parameters())
    remaining = all_params - (total(masks) - kept(masks))
    sparsity = 1.0 - kept(masks) / total(masks) if masks else 0.0
    input_shape = tuple(x.shape[1:])
    pruned_flops, dense_flops = flops(model, masks, input_shape)
    physical = slimmed(model, masks, input_shape) if slim else None
    return Evaluation(
        accuracy,
        loss,
        sparsity,
        1.0 - remaining / all_params,
        remaining,
        all_params,
        all_params / remaining,
        pruned_flops,
        dense_flops,
        physical.params if physical else None,
        physical.flops if physical else None,
    )


@torch.no_grad()
def flops(model: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Multiply-accumulates of one forward pass of conv and linear layers: (pruned, dense).

    A layer's dense count is its weight count times the output positions it is applied at; a
    pruned layer does only the multiplications of its surviving weights (the usual accounting
    for unstructured sparsity). Other layers (activations, pooling, norms) are left out.
    """
    counts: dict[str, tuple[int, int]] = {}
    names = {module: name for name, module in model.named_modules()}

    def count(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        positions = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
        name = f"{names[module]}.weight" if names[module] else "weight"
        surviving = int(masks[name].sum()) if name in masks else module.weight.numel()
        counts[name] = (surviving * positions, module.weight.numel() * positions)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        was_training = model.training
        model.eval()
        model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())


def relative_distance(weights: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    """‖weights - reference‖ / ‖reference‖ over every floating tensor of `reference` (L2 norms of
    all of them together, in float64): 0.01 means the two lie 1% of the reference's size apart."""
    names = [name for name, tensor in reference.items() if tensor.is_floating_point()]
    apart = math.fsum(float((weights[n].double() - reference[n].double()).square().sum()) for n in names)
    size = math.fsum(float(reference[n].double().square().sum()) for n in names)
    return math.sqrt(apart / size) if size else math.inf
