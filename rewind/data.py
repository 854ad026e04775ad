"""Datasets as in-memory tensors.

Images are float32 (N, C, H, W) and labels int64 (N,). Digits are scaled to [0, 1]; CIFAR-10 and
MNIST, read from a local folder in their published formats, are standardised per channel. Every
split is a pure function of its seed, so two runs see the same examples in the same order.
"""

import gzip
import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rewind import RewindError
from rewind.plugins import load_callable

SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
# The built-in datasets' image shape and class count: what a model is built for, known without
# reading the data. Digits has 1,797 images, split by `load_digits`.
SHAPES = {"digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}
DIGITS_IMAGES = 1797


@dataclass(frozen=True)
class Dataset:
    """Train, validation and test splits held in memory. The loaders return none for validation:
    `hold_out` carves it out of the test split, as the paper held out 2,000 CIFAR-10 test images."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_val: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    y_val: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))

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
        data = cls(**{name: tensors[name] for name in SPLITS}, num_classes=num_classes)
        data.check(source, ("train", "val", "test"))
        return data

    def check(self, source: str, splits: tuple[str, ...] = ("train", "test")) -> None:
        """Refuse, naming `source`, splits a training run could not use: examples of one shape,
        float32 images (N, …) and int64 labels (N,) below `num_classes`, N > 0."""
        for split in splits:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dim() < 2 or y.dim() != 1 or len(x) != len(y) or not len(y):
                raise RewindError(
                    f"{source}: {split} split has examples {tuple(x.shape)} and labels "
                    f"{tuple(y.shape)}; expected (N, …) and (N,), N > 0"
                )
            if x.dtype != torch.float32 or y.dtype != torch.int64:
                raise RewindError(f"{source}: {split} split is {x.dtype} and {y.dtype}; expected float32 and int64")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise RewindError(f"{source}: {split} examples are {tuple(x.shape[1:])}, train's {self.input_shape}")
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise RewindError(f"{source}: {split} labels fall outside 0 … {self.num_classes - 1}")


def load_plugin(path: str, split_seed: int) -> Dataset:
    """The dataset a `package.module:function` loader returns for `split_seed` (rewind.plugins)."""
    data = load_callable(path)(split_seed)
    if not isinstance(data, Dataset):
        raise RewindError(f"{path!r} returned a {type(data).__name__}, not a rewind.data.Dataset")
    data.check(repr(path))
    return data


def validation_size(test_images: int, fraction: float) -> int:
    """How many of `test_images` a validation `fraction` holds out; an error unless both the
    validation and the test split keep at least one image."""
    held_out = round(fraction * test_images)
    if not 0 < held_out < test_images:
        raise RewindError(
            f"a validation fraction of {fraction:g} holds out {held_out} of {test_images} test images; "
            "both splits need at least one"
        )
    return held_out


def hold_out(data: Dataset, fraction: float, seed: int) -> Dataset:
    """`data` with `fraction` of its test images, drawn at random by `seed`, moved to validation
    (both keep the images' original order)."""
    held_out = validation_size(len(data.y_test), fraction)
    order = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(seed))
    val, test = order[:held_out].sort().values, order[held_out:].sort().values
    return replace(
        data, x_val=data.x_test[val], y_val=data.y_test[val], x_test=data.x_test[test], y_test=data.y_test[test]
    )


def load_digits(test_fraction: float, seed: int) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), split stratified by class.

    It ships inside scikit-learn, so the default pipeline needs no download. scikit-learn is
    imported here rather than at module level: only the prepare stage pays its import time.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    split_sizes(DIGITS_IMAGES, 10, test_fraction)  # a one-line error where scikit-learn would raise
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


def split_sizes(images: int, classes: int, test_fraction: float) -> tuple[int, int]:
    """Train and test sizes of a stratified split of `images` by `test_fraction`, as scikit-learn
    rounds them; an error when either side could not hold every class."""
    test = math.ceil(test_fraction * images)
    if not classes <= test <= images - classes:
        raise RewindError(
            f"a test fraction of {test_fraction:g} leaves {test} test and {images - test} training images; "
            f"a stratified split of {classes} classes needs at least {classes} in each"
        )
    return images - test, test


CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_PIXELS = 3 * 32 * 32
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08


def load_cifar10(folder: Path) -> Dataset:
    """CIFAR-10 from the folder `cifar-10-batches-py` of the published python archive: 50,000
    training images in `data_batch_1` … `data_batch_5`, 10,000 test images in `test_batch`."""
    folder = _existing_folder(folder, "CIFAR-10 python batches (data_batch_1 … data_batch_5, test_batch)")
    train = [_cifar_batch(folder / name) for name in CIFAR10_TRAIN]
    x_test, y_test = _cifar_batch(folder / CIFAR10_TEST)
    x_train, y_train = torch.cat([x for x, _ in train]), torch.cat([y for _, y in train])
    return _standardised(x_train, y_train, x_test, y_test, 10)


def load_mnist(folder: Path) -> Dataset:
    """MNIST from its four published IDX files (`train-images-idx3-ubyte` …), gzipped or not:
    60,000 training and 10,000 test images of 28x28."""
    folder = _existing_folder(folder, f"the MNIST IDX files {sorted(MNIST_FILES.values())} (optionally .gz)")
    arrays = {split: _idx_file(folder, name) for split, name in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.shape[1:] != (28, 28) or labels.ndim != 1 or len(labels) != len(images):
            raise RewindError(
                f"{folder}: MNIST {split} files hold images {images.shape} and labels {labels.shape}; "
                "expected (N, 28, 28) and (N,)"
            )
    x_train, x_test = (torch.from_numpy(arrays[s].copy()).unsqueeze(1) for s in ("x_train", "x_test"))
    y_train, y_test = (_labels(torch.from_numpy(arrays[s].astype(np.int64)), 10, folder) for s in ("y_train", "y_test"))
    return _standardised(x_train, y_train, x_test, y_test, 10)


def _existing_folder(folder: Path, expected: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise RewindError(f"{folder}: no such folder; expected a folder holding {expected} (see README: Datasets)")
    return folder


def _standardised(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, num_classes: int
) -> Dataset:
    """uint8 images → float32 standardised per channel with the training split's own mean and
    standard deviation (for the published CIFAR-10 files: 0.4914, 0.4822, 0.4465 and 0.2470, 0.2435,
    0.2616; for MNIST 0.1307 and 0.3081 — the constants torchvision users copy come from the same sums)."""
    pixels = x_train.double().div_(255.0)
    mean = pixels.mean(dim=(0, 2, 3), keepdim=True)
    std = pixels.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-12)

    def scale(x: torch.Tensor) -> torch.Tensor:
        return ((x.double() / 255.0 - mean) / std).float()

    return Dataset(scale(x_train), y_train, scale(x_test), y_test, num_classes)


def _labels(labels: torch.Tensor, num_classes: int, source: Path) -> torch.Tensor:
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise RewindError(
            f"{source}: labels range {int(labels.min())}..{int(labels.max())}; expected 0..{num_classes - 1}"
        )
    return labels


# numpy's array reconstructor, under its numpy 1 name (the published files) and its numpy 2 name.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that rebuilds dicts, lists, bytes, str, numbers and numpy arrays, and nothing
    else: any other global in the stream (the way a pickle runs code) is refused."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def _cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One python batch: a dict with b'data' (N, 3072) uint8 rows (1024 red, 1024 green, 1024
    blue, each row-major 32x32) and b'labels' (N ints)."""
    expected = "a CIFAR-10 python batch (a pickled dict with b'data': uint8 (N, 3072), b'labels': N ints)"
    try:
        with open(path, "rb") as file:
            batch = _ArraysOnly(file, encoding="bytes").load()
    except FileNotFoundError:
        raise RewindError(f"{path}: file not found; expected {expected}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise RewindError(f"{path}: unreadable ({err or 'truncated'}); expected {expected}") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != CIFAR10_PIXELS
        or not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(isinstance(label, int) for label in labels)
    ):
        found = f"data {getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        raise RewindError(f"{path}: found {found}; expected {expected}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, _labels(torch.tensor(labels, dtype=torch.int64), 10, path)


def _idx_file(folder: Path, name: str) -> np.ndarray:
    """An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, ndim big-endian int32 sizes, data."""
    plain, packed = folder / name, folder / f"{name}.gz"
    path = plain if plain.exists() else packed
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise RewindError(f"{folder}: neither {name} nor {name}.gz found; expected the MNIST IDX files") from None
    except (OSError, EOFError) as err:
        raise RewindError(f"{path}: not a readable gzip file ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != IDX_UBYTE:
        raise RewindError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()}, expected 000008xx)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise RewindError(
            f"{path}: {len(raw) - header} data bytes for shape {shape}, expected {int(np.prod(shape))} (truncated?)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


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
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None, first: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches over (x, y), shuffled by `generator` when one is given, from batch `first` on
    (the same order, so a run resumed mid-epoch sees the rest of the batches it would have seen)."""
    order = torch.randperm(len(y), generator=generator) if generator is not None else None
    for start in range(first * batch_size, len(y), batch_size):
        if order is None:
            yield x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
