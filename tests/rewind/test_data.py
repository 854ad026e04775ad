import pytest
import torch

from rewind import RewindError
from rewind.data import Dataset, batches, load_digits


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
    data = load_digits(0.25, 0)
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
