"""What a pruned network is worth: accuracy and loss, and what it costs: parameters and sparsity."""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rewind.data import batches
from rewind.prune import Masks, kept, total


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    sparsity: float
    remaining_params: int
    total_params: int
    compression: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


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


def evaluate(model: nn.Module, masks: Masks, x: torch.Tensor, y: torch.Tensor) -> Evaluation:
    """Accuracy and loss on (x, y), with sparsity over the prunable weights and the
    compression ratio over all parameters (total / remaining, biases and norms included)."""
    accuracy, loss = accuracy_and_loss(model, x, y)
    all_params = sum(p.numel() for p in model.parameters())
    remaining = all_params - (total(masks) - kept(masks))
    sparsity = 1.0 - kept(masks) / total(masks) if masks else 0.0
    return Evaluation(accuracy, loss, sparsity, remaining, all_params, all_params / remaining)
