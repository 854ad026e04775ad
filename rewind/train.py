"""The training loop: SGD over in-memory tensors, mask-aware, deterministic, one rate per epoch.

Everything that varies between strategies (start weights, rates, mask) comes in as arguments;
the loop itself is the same for dense training and every retraining. The data order of an epoch
is a pure function of (seed, epoch label), so an epoch can be replayed, or resumed, exactly.
"""

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rewind import RewindError
from rewind.data import Dataset, batches
from rewind.optim import MaskedSGD
from rewind.prune import Masks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SGD:
    """Optimizer settings shared by dense training and every retraining."""

    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    seconds: float


EpochCallback = Callable[[EpochRecord, nn.Module, MaskedSGD], None]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# fp32 everywhere, or bf16 autocast of the forward pass (weights, gradients, masks and momentum
# stay fp32; bf16 needs no loss scaling). It pays on tensor-core GPUs; on a CPU it is slower.
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Resume:
    """Where an interrupted run stopped: epochs completed and the momentum at that point."""

    epochs_done: int
    momentum: dict[str, torch.Tensor]


def shuffle_seed(seed: int, label: int) -> int:
    """The seed of one epoch's data order: distinct per (seed, label), stable across runs."""
    return (seed * 1_000_003 + label) % (2**63)


def train(
    model: nn.Module,
    data: Dataset,
    rates: Sequence[float],
    masks: Masks,
    sgd: SGD,
    seed: int,
    labels: Sequence[int] | None = None,
    on_epoch: EpochCallback | None = None,
    resume: Resume | None = None,
    augment: Augment | None = None,
    precision: Precision = "fp32",
    momentum: dict[str, torch.Tensor] | None = None,
) -> list[EpochRecord]:
    """Train for len(rates) epochs, epoch i at rate rates[i], keeping pruned weights at zero.

    `labels` name the epochs for data ordering (default 0, 1, …): a strategy that replays epochs
    T-t … T-1 of the dense schedule passes those numbers to see the same data order again.
    Momentum starts fresh, or from `momentum` (restored from a checkpoint; its pruned entries are
    zeroed), unless `resume` continues an interrupted run: then the model must hold the weights
    after `resume.epochs_done` epochs, and the result is bit-identical to a run that was never
    interrupted. `augment` transforms each training batch (seeded with the epoch);
    `precision` chooses fp32 or a bf16 forward pass.
    Returns the records of the epochs trained in this call.
    """
    labels = list(range(len(rates))) if labels is None else list(labels)
    optimizer = MaskedSGD(model, masks, sgd.momentum, sgd.weight_decay, sgd.nesterov)
    first = 0
    if resume is not None:
        optimizer.load_state_dict(resume.momentum)
        first = resume.epochs_done
    elif momentum is not None:
        optimizer.load_state_dict(momentum)
    history = []
    for index, (rate, label) in enumerate(zip(rates, labels, strict=True)):
        if index < first:
            continue
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(shuffle_seed(seed, label))
        loss, accuracy = _epoch(model, data, optimizer, rate, sgd.batch_size, generator, augment, precision)
        if not math.isfinite(loss):
            raise RewindError(f"training diverged: loss is {loss} in epoch {index + 1} of {len(rates)} (lr {rate:g})")
        record = EpochRecord(index, rate, loss, accuracy, time.perf_counter() - started)
        history.append(record)
        log.info("epoch %d/%d  lr %.4g  loss %.4f  train acc %.4f", index + 1, len(rates), rate, loss, accuracy)
        if on_epoch is not None:
            on_epoch(record, model, optimizer)
    return history


def _epoch(
    model: nn.Module,
    data: Dataset,
    optimizer: MaskedSGD,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    augment: Augment | None,
    precision: Precision,
) -> tuple[float, float]:
    model.train()
    device = next(model.parameters()).device
    # nullcontext for fp32 rather than autocast(enabled=False): the common path pays nothing.
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    )
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for x, y in batches(data.x_train, data.y_train, batch_size, generator):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x, generator)
        with autocast():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(lr)
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
    count = len(data.y_train)
    return float(loss_sum) / count, float(correct) / count
