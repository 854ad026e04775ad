"""Datasets as in-memory tensors.

Images are float32 (N, C, H, W) in [0, 1] and labels int64 (N,). Every split is a pure function
of its seed, so two runs see the same examples in the same order.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from rewind import RewindError

SPLITS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Dataset:
    """A train/test split held in memory."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in SPLITS}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], num_classes: int, source: str) -> "Dataset":
        """Rebuild a dataset, checking that what was loaded has the shapes a dataset must have."""
        missing = [name for name in SPLITS if name not in tensors]
        if missing:
            raise RewindError(f"{source}: missing tensors {missing}, expected {list(SPLITS)}")
        for split in ("train", "test"):
            x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
            if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
                raise RewindError(
                    f"{source}: {split} split has images {tuple(x.shape)} and labels "
                    f"{tuple(y.shape)}; expected (N, C, H, W) and (N,)"
                )
        return cls(**{name: tensors[name] for name in SPLITS}, num_classes=num_classes)


def load_digits(test_fraction: float, seed: int) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), split stratified by class.

    It ships inside scikit-learn, so the default pipeline needs no download. scikit-learn is
    imported here rather than at module level: only the prepare stage pays its import time.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=test_fraction,
        random_state=seed,
        stratify=labels.numpy(),
    )
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return Dataset(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], 10)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch, on its own device: zero-pad by `padding`, take a
    random crop of the original size, flip half the images horizontally. The random draws come
    from `generator` (on the CPU), so an epoch's augmentation is as reproducible as its order."""
    n, _, height, width = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = (offsets[0, :, None] + torch.arange(height, device=x.device))[:, None, :, None]
    across = torch.arange(width, device=x.device).expand(n, width)
    across = torch.where(flips[:, None], width - 1 - across, across)
    cols = (offsets[1, :, None] + across)[:, None, None, :]
    index = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[index, channel, rows, cols]


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches over (x, y), shuffled by `generator` when one is given."""
    order = torch.randperm(len(y), generator=generator) if generator is not None else None
    for start in range(0, len(y), batch_size):
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
