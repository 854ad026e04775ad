import gzip
import pickle
import struct
from collections import Counter

import numpy as np
import pytest
import torch

from rewind import RewindError
from rewind.data import Dataset, batches, hold_out, load_cifar10, load_digits, load_mnist


def test_digits_split_is_stratified_seeded_and_scaled():
    a, b, c = load_digits(0.25, 0), load_digits(0.25, 0), load_digits(0.25, 1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_test) == 1797
    assert float(a.x_train.min()) >= 0.0 and float(a.x_train.max()) <= 1.0
    train_share = torch.bincount(a.y_train) / len(a.y_train)
    test_share = torch.bincount(a.y_test) / len(a.y_test)
    assert torch.allclose(train_share, test_share, atol=0.01)


def test_batches_cover_every_example_once():
    x, y = torch.arange(10).float().view(10, 1, 1, 1), torch.arange(10)
    seen = torch.cat([yb for _, yb in batches(x, y, 3, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(yb) for _, yb in batches(x, y, 3)] == [3, 3, 3, 1]


def test_from_tensors_names_the_source_on_bad_shapes():
    data = hold_out(load_digits(0.25, 0), 0.2, 0)
    rebuilt = Dataset.from_tensors(data.tensors(), 10, "prepared.safetensors")
    assert all(torch.equal(rebuilt.tensors()[name], tensor) for name, tensor in data.tensors().items())
    with pytest.raises(RewindError, match="val split"):
        Dataset.from_tensors(load_digits(0.25, 0).tensors(), 10, "prepared.safetensors")
    tensors = data.tensors()
    tensors["x_test"] = tensors["x_test"][:5]
    with pytest.raises(RewindError, match="prepared.safetensors: test split"):
        Dataset.from_tensors(tensors, 10, "prepared.safetensors")
    del tensors["y_train"]
    with pytest.raises(RewindError, match="missing tensors"):
        Dataset.from_tensors(tensors, 10, "prepared.safetensors")


def test_random_crop_flip_is_a_seeded_shifted_or_mirrored_copy():
    from rewind.data import random_crop_flip

    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    again = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape and torch.equal(out, again)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    kinds = set()
    for image, source in zip(out, padded, strict=True):
        crops = {
            (i, j, f)
            for i in range(5)
            for j in range(5)
            for f in (0, 1)
            if torch.equal(image, (source[:, i : i + 8, j : j + 8].flip(2) if f else source[:, i : i + 8, j : j + 8]))
        }
        assert crops, "every output is a crop of the padded image, mirrored or not"
        kinds |= {f for *_, f in crops}
    assert kinds == {0, 1}, "some images are flipped and some are not"
    unchanged = random_crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(2)) for a, b in zip(unchanged, x, strict=True))


# --- CIFAR-10 and MNIST in their published formats, written small ---------------------------


class Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` opcodes, as in the published CIFAR-10 batches (pickled by
    Python 2's cPickle, protocol 2), so the tests read files in the published format."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        size = len(obj)
        header = pickle.SHORT_BINSTRING + bytes([size]) if size < 256 else pickle.BINSTRING + struct.pack("<i", size)
        self.write(header + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_cifar_batch(path, images: np.ndarray, labels: list[int]) -> None:
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": labels,
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    with open(path, "wb") as file:
        Python2Pickler(file, protocol=2).dump(batch)


def write_cifar(folder, per_batch: int = 4, test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = test if name == "test_batch" else per_batch
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        write_cifar_batch(folder / name, images, labels)
        written[name] = (images, labels)
    return written


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", s) for s in array.shape) + array.tobytes()


def write_mnist(folder, train: int = 12, test: int = 5, gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, test).astype(np.uint8),
    }
    for name, array in arrays.items():
        raw = idx_bytes(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return arrays


def test_cifar10_python_batches_load_in_order_standardised_per_channel(tmp_path):
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    data = load_cifar10(tmp_path / "cifar-10-batches-py")
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.y_train.tolist() == [label for i in range(1, 6) for label in written[f"data_batch_{i}"][1]]
    assert data.y_test.tolist() == written["test_batch"][1]
    # Channel-major rows: undoing the standardisation gives back the stored pixels exactly.
    raw = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)]).astype(np.float64) / 255
    mean, std = raw.mean(axis=(0, 2, 3)), raw.std(axis=(0, 2, 3), ddof=1)
    restored = data.x_train.double() * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert torch.allclose(restored * 255, torch.from_numpy(raw * 255), atol=1e-3)
    assert torch.allclose(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(data.x_train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4)


def test_cifar10_refuses_missing_truncated_wrong_shape_and_foreign_files(tmp_path):
    folder = tmp_path / "cifar"
    with pytest.raises(RewindError, match=r"cifar: no such folder; expected a folder holding CIFAR-10 python batches"):
        load_cifar10(folder)
    write_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(RewindError, match=r"data_batch_3: file not found; expected a CIFAR-10 python batch"):
        load_cifar10(folder)
    write_cifar(folder)
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(RewindError, match=r"data_batch_2: unreadable .*expected a CIFAR-10 python batch"):
        load_cifar10(folder)
    write_cifar(folder)
    write_cifar_batch(folder / "test_batch", np.zeros((2, 3, 16, 16), np.uint8), [0, 1])
    with pytest.raises(RewindError, match=r"test_batch: found data uint8 \(2, 768\); expected .*uint8 \(N, 3072\)"):
        load_cifar10(folder)
    write_cifar_batch(folder / "test_batch", np.zeros((2, 3, 32, 32), np.uint8), [0, 10])
    with pytest.raises(RewindError, match=r"test_batch: labels range 0..10; expected 0..9"):
        load_cifar10(folder)


class Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar10_unpickler_refuses_any_global_but_numpy_arrays(tmp_path, capsys):
    folder = tmp_path / "cifar"
    write_cifar(folder)
    with open(folder / "data_batch_1", "wb") as file:
        Python2Pickler(file, protocol=2).dump({b"data": Boom(), b"labels": []})
    with pytest.raises(RewindError, match=r"data_batch_1: unreadable \(refusing global __builtin__.print\)"):
        load_cifar10(folder)
    assert "must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files_load_gzipped_or_not(tmp_path, gz):
    arrays = write_mnist(tmp_path / "mnist", gz=gz)
    data = load_mnist(tmp_path / "mnist")
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert len(data.y_train) == 12 and len(data.y_test) == 5
    assert data.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    pixels = torch.from_numpy(arrays["train-images-idx3-ubyte"]).double() / 255
    expected = (pixels - pixels.mean()) / pixels.std()
    assert torch.allclose(data.x_train[:, 0].double(), expected, atol=1e-5)


def test_mnist_refuses_truncated_wrong_shape_and_wrong_magic(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=False)
    path = folder / "t10k-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(
        RewindError, match=r"t10k-images-idx3-ubyte: 3910 data bytes for shape \(5, 28, 28\), expected 3920"
    ):
        load_mnist(folder)
    path.write_bytes(idx_bytes(np.zeros((5, 27, 28), np.uint8)))
    with pytest.raises(
        RewindError, match=r"mnist: MNIST test files hold images \(5, 27, 28\) .*expected \(N, 28, 28\)"
    ):
        load_mnist(folder)
    path.write_bytes(b"\x00\x00\x0d\x03" + raw[4:])
    with pytest.raises(RewindError, match=r"t10k-images-idx3-ubyte: not an IDX file of unsigned bytes"):
        load_mnist(folder)
    path.unlink()
    with pytest.raises(RewindError, match=r"neither t10k-images-idx3-ubyte nor t10k-images-idx3-ubyte.gz found"):
        load_mnist(folder)


def test_hold_out_moves_a_seeded_random_part_of_test_to_validation():
    data = load_digits(0.25, 0)
    held = hold_out(data, 0.2, seed=7)
    assert (len(held.y_val), len(held.y_test)) == (90, 360)
    assert torch.equal(held.x_train, data.x_train), "training data is untouched"

    def images(x):
        return Counter(tuple(image.flatten().tolist()) for image in x)

    assert images(held.x_val) + images(held.x_test) == images(data.x_test), "a partition of the test split"
    again, other = hold_out(data, 0.2, seed=7), hold_out(data, 0.2, seed=8)
    assert torch.equal(again.y_val, held.y_val) and torch.equal(again.x_test, held.x_test), "fixed by the seed"
    assert not torch.equal(other.x_val, held.x_val)


def test_hold_out_needs_both_splits():
    data = load_digits(0.25, 0)
    with pytest.raises(RewindError, match="holds out 0 of 450 test images"):
        hold_out(data, 0.001, seed=0)
    with pytest.raises(RewindError, match="holds out 450 of 450"):
        hold_out(data, 0.9999, seed=0)
