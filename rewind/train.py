"""The training loop: SGD over in-memory tensors, mask-aware, deterministic, one rate per step.

Everything that varies between strategies (start weights, rates, mask, the step to start from)
comes in as arguments; the loop itself is the same for dense training and every retraining.
Training time is counted in steps of the dense run: step s is batch s mod S of epoch s div S
(S steps per epoch), and an epoch's data order is a pure function of (seed, epoch), each batch's
augmentation one of (seed, epoch, batch). So any step can be replayed, or resumed, exactly: a
strategy that rewinds to iteration 4701 sees the very batches the dense run saw from there on.
"""

import contextlib
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rewind import RewindError
from rewind.data import Dataset, batches
from rewind.optim import MaskedSGD
from rewind.prune import Masks


@dataclass(frozen=True)
class SGD:
    """Optimizer settings shared by dense training and every retraining."""

    batch_size: int
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass(frozen=True)
class EpochRecord:
    """The steps a run made in one epoch of the dense run's time (all of them, or the part a run
    starting or stopping mid-epoch made), at `lr`, the rate of the first of them."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    steps: int
    seconds: float


EpochCallback = Callable[[EpochRecord, nn.Module, MaskedSGD], None]
StepCallback = Callable[[int, nn.Module, MaskedSGD], None]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# fp32 everywhere, or bf16 autocast of the forward pass (weights, gradients, masks and momentum
# stay fp32; bf16 needs no loss scaling). It pays on tensor-core GPUs; on a CPU it is slower.
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Resume:
    """Where an interrupted run stopped: steps completed and the momentum at that point."""

    steps_done: int
    momentum: dict[str, torch.Tensor]


def steps_per_epoch(examples: int, batch_size: int) -> int:
    """Mini-batches in one pass over `examples` (the last one may be smaller)."""
    return math.ceil(examples / batch_size)


def shuffle_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's data order: distinct per (seed, epoch), stable across runs."""
    return (seed * 1_000_003 + epoch) % (2**63)


def augment_seed(seed: int, epoch: int, batch: int) -> int:
    """The seed of one batch's augmentation, so a run starting mid-epoch draws what the dense run drew."""
    return (shuffle_seed(seed, epoch) * 1_000_033 + batch + 1) % (2**63)


def train(
    model: nn.Module,
    data: Dataset,
    rates: Sequence[float],
    masks: Masks,
    sgd: SGD,
    seed: int,
    start_step: int = 0,
    on_epoch: EpochCallback | None = None,
    resume: Resume | None = None,
    augment: Augment | None = None,
    precision: Precision = "fp32",
    momentum: dict[str, torch.Tensor] | None = None,
    checkpoint_steps: Collection[int] = (),
    on_checkpoint: StepCallback | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[EpochRecord]:
    """Train for len(rates) steps from `start_step`, step i at rate rates[i], keeping pruned
    weights at zero; `on_epoch` after each epoch's steps, `on_checkpoint` after each step in
    `checkpoint_steps` (counted from the dense run's start, like `start_step`), `on_step` after
    every step with the steps done so far, counted the same way (for a progress display: it gets
    no loss, since reading one would make the device wait for every step).

    Momentum starts fresh, or from `momentum` (restored from a checkpoint; its pruned entries are
    zeroed), unless `resume` continues an interrupted run: then the model must hold the weights
    after `resume.steps_done` steps, and the result is bit-identical to a run that was never
    interrupted. `augment` transforms each training batch; `precision` chooses fp32 or a bf16
    forward pass. Returns the records of the epochs trained in this call.
    """
    optimizer = MaskedSGD(model, masks, sgd.momentum, sgd.weight_decay, sgd.nesterov)
    done = 0
    if resume is not None:
        optimizer.load_state_dict(resume.momentum)
        done = resume.steps_done
    elif momentum is not None:
        optimizer.load_state_dict(momentum)
    per_epoch = steps_per_epoch(len(data.y_train), sgd.batch_size)
    stop, step, history = start_step + len(rates), start_step + done, []

    def after_step(at: int) -> None:
        if on_checkpoint is not None and at in checkpoint_steps:
            on_checkpoint(at, model, optimizer)
        if on_step is not None:
            on_step(at)

    while step < stop:
        epoch = step // per_epoch
        last = min(stop, (epoch + 1) * per_epoch)
        rate = rates[step - start_step]
        started = time.perf_counter()
        loss, accuracy = _epoch(
            model,
            data,
            optimizer,
            Segment(seed, epoch, step - epoch * per_epoch, rates[step - start_step : last - start_step]),
            sgd.batch_size,
            augment,
            precision,
            lambda batch, epoch=epoch: after_step(epoch * per_epoch + batch + 1),
        )
        if not math.isfinite(loss):
            raise RewindError(
                f"training diverged: loss is {loss} in epoch {epoch + 1} at steps {step}-{last} (lr {rate:g})"
            )
        record = EpochRecord(epoch, rate, loss, accuracy, last - step, time.perf_counter() - started)
        history.append(record)
        step = last
        if on_epoch is not None:
            on_epoch(record, model, optimizer)
    return history


@dataclass(frozen=True)
class Segment:
    """Consecutive steps within one epoch: from batch `first_batch`, one per rate."""

    seed: int
    epoch: int
    first_batch: int
    rates: Sequence[float]


def _epoch(
    model: nn.Module,
    data: Dataset,
    optimizer: MaskedSGD,
    segment: Segment,
    batch_size: int,
    augment: Augment | None,
    precision: Precision,
    after_batch: Callable[[int], None],
) -> tuple[float, float]:
    """Train the segment's steps; the mean loss and accuracy over the examples they saw."""
    model.train()
    device = next(model.parameters()).device
    # nullcontext for fp32 rather than autocast(enabled=False): the common path pays nothing.
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext
    )
    order = torch.Generator().manual_seed(shuffle_seed(segment.seed, segment.epoch))
    shuffled = batches(data.x_train, data.y_train, batch_size, order, first=segment.first_batch)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for batch, (lr, (x, y)) in enumerate(zip(segment.rates, shuffled, strict=False), start=segment.first_batch):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x, torch.Generator().manual_seed(augment_seed(segment.seed, segment.epoch, batch)))
        with autocast():
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(lr)
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        count += len(y)
        after_batch(batch)
    return float(loss_sum) / count, float(correct) / count
