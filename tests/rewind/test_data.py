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
