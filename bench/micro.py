"""In-process figures: the cost of masking inside the optimizer step, and our training loop against
a minimal plain-PyTorch loop on the same tensors (same process, so same threads and same load)."""

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.stats import interleaved, ratios, summary
from rewind.data import Dataset, batches
from rewind.models import MODELS, build_model
from rewind.optim import MaskedSGD
from rewind.prune import full_masks, prune, scores
from rewind.train import SGD, steps_per_epoch, train

LR, MOMENTUM, WEIGHT_DECAY, SPARSITY = 0.05, 0.9, 1e-4, 0.9
CIFAR_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class Case:
    """One model on one input shape, with the batch size its stage would train at."""

    model: str
    shape: tuple[int, int, int]
    batch: int
    note: str = ""


def conv_case(batch: int) -> Case:
    """ResNet-20 on CIFAR shapes, or LeNet-5 on the same shapes while the registry lacks resnet20."""
    if "resnet20" in MODELS:
        return Case("resnet20", CIFAR_SHAPE, batch)
    return Case("lenet5", CIFAR_SHAPE, batch, "resnet20 is not in rewind.models.MODELS; lenet5 on 3x32x32 stands in")


def mask_cases(quick: bool) -> list[Case]:
    """The MLP on digits and MNIST shapes, and the CIFAR conv net."""
    return [Case("mlp", (1, 8, 8), 64), Case("mlp", (1, 28, 28), 64), conv_case(8 if quick else 128)]


def sparse_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Global magnitude masks removing `sparsity` of the prunable weights, as the prune stage makes them."""
    everything = full_masks(model)
    return prune(scores(dict(model.named_parameters()), everything, "magnitude", 0), everything, sparsity, "global")


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, zero: Callable, step: Callable) -> Callable[[], None]:
    """One training step: forward, loss, backward, optimizer step."""

    def run() -> None:
        loss = F.cross_entropy(model(x), y)
        zero()
        loss.backward()
        step()

    return run


def mask_overhead(case: Case, repetitions: int, steps: int) -> dict:
    """Seconds per step of MaskedSGD at SPARSITY against torch.optim.SGD on the same model and batch."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(case.batch, *case.shape, generator=generator)
    y = torch.randint(0, 10, (case.batch,), generator=generator)
    dense_model = build_model(case.model, case.shape, 10, seed=0)
    masked_model = copy.deepcopy(dense_model)
    plain = torch.optim.SGD(dense_model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    masked = MaskedSGD(masked_model, sparse_masks(masked_model, SPARSITY), MOMENTUM, WEIGHT_DECAY, False)
    dense_step = step_fn(dense_model, x, y, lambda: plain.zero_grad(set_to_none=True), plain.step)
    masked_step = step_fn(masked_model, x, y, masked.zero_grad, lambda: masked.step(LR))
    for _ in range(2):  # warm-up: allocator, momentum buffers, first-call dispatch
        dense_step()
        masked_step()
    times = interleaved({"dense": _repeat(dense_step, steps), "masked": _repeat(masked_step, steps)}, repetitions)
    return {
        "model": case.model,
        "input_shape": list(case.shape),
        "batch_size": case.batch,
        "sparsity": SPARSITY,
        "steps_per_repetition": steps,
        "dense_step_seconds": summary([t / steps for t in times["dense"]]),
        "masked_step_seconds": summary([t / steps for t in times["masked"]]),
        "ratio": ratios(times["masked"], times["dense"]),
        "note": case.note,
    }


def _repeat(action: Callable[[], None], count: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(count):
            action()

    return run


def steps_for(case: Case, quick: bool) -> int:
    """Enough steps that one repetition lasts tens of milliseconds or more, not timer noise."""
    if case.model == "mlp":
        return 5 if quick else 40
    return 1 if quick else 4


def mask_section(quick: bool) -> dict:
    repetitions = 3 if quick else 9
    cases = [mask_overhead(case, repetitions, steps_for(case, quick)) for case in mask_cases(quick)]
    return {"target_max_ratio": 1.05, "threads": torch.get_num_threads(), "cases": cases}


def plain_epoch(model: nn.Module, data: Dataset, batch_size: int, generator_seed: int) -> None:
    """The minimal loop: same batches (same shuffling), torch.optim.SGD, nothing else."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.train()
    for x, y in batches(data.x_train, data.y_train, batch_size, torch.Generator().manual_seed(generator_seed)):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def roofline(quick: bool) -> dict:
    """Samples/s of rewind.train.train (dense masks, as the train stage runs it) against plain_epoch."""
    case = conv_case(8 if quick else 128)
    samples = 16 if quick else 1024
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(samples, *case.shape, generator=generator)
    y = torch.randint(0, 10, (samples,), generator=generator)
    data = Dataset(x, y, x[:1], y[:1], 10)
    ours_model = build_model(case.model, case.shape, 10, seed=0)
    plain_model = copy.deepcopy(ours_model)
    masks = full_masks(ours_model)
    sgd = SGD(case.batch, MOMENTUM, WEIGHT_DECAY)
    actions = {
        "ours": lambda: train(ours_model, data, [LR] * steps_per_epoch(samples, case.batch), masks, sgd, seed=0),
        "plain": lambda: plain_epoch(plain_model, data, case.batch, 0),
    }
    for action in actions.values():  # warm-up epoch each
        action()
    times = interleaved(actions, 2 if quick else 5)
    return {
        "model": case.model,
        "input_shape": list(case.shape),
        "batch_size": case.batch,
        "samples_per_epoch": samples,
        "threads": torch.get_num_threads(),
        "ours_samples_per_second": summary([samples / t for t in times["ours"]]),
        "plain_samples_per_second": summary([samples / t for t in times["plain"]]),
        "ratio": ratios(times["plain"], times["ours"]),
        "target_min_ratio": 0.95,
        "note": case.note,
    }
