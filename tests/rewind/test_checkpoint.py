import pickle

import pytest
import torch

from rewind import RewindError
from rewind.checkpoint import load_tensors, save_tensors


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tensors = {"a.weight": torch.randn(30, 20), "mask": torch.rand(5) > 0.5, "step": torch.tensor(7)}
    save_tensors(path, tensors, {"epoch": "3"})
    return path, tensors


def test_round_trip_keeps_tensors_dtypes_and_metadata(saved):
    path, tensors = saved
    loaded, meta = load_tensors(path)
    assert meta == {"epoch": "3"}
    assert loaded.keys() == tensors.keys()
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor)


def test_write_is_atomic_and_leaves_no_temporary_files(saved):
    path, _ = saved
    save_tensors(path, {"x": torch.zeros(3)})
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_killed_writers_temporary_file_goes_with_the_next_write_of_that_file(saved):
    """SIGKILL leaves `.<name>.<random>.tmp` beside the target; rewriting the target removes it,
    and only it: another file's temporary files are another writer's business."""
    path, _ = saved
    leftover = path.parent / f".{path.name}.k1ll3d.tmp"
    other = path.parent / ".other.safetensors.inflight.tmp"
    leftover.write_bytes(b"half a checkpoint")
    other.write_bytes(b"someone else's write")
    save_tensors(path, {"x": torch.zeros(3)})
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, other.name])


def test_truncated_file_is_refused_naming_it(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-17])
    with pytest.raises(RewindError, match=str(path)):
        load_tensors(path)


def test_flipped_byte_is_refused_by_the_hash(saved):
    path, _ = saved
    payload = bytearray(path.read_bytes())
    payload[-5] ^= 0xFF
    path.write_bytes(bytes(payload))
    with pytest.raises(RewindError, match="hash mismatch"):
        load_tensors(path)


class Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def test_pickle_is_never_unpickled(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, _ = saved
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(RewindError, match=str(path)):
        load_tensors(path)
    torch.save({"w": Exploit()}, path)
    with pytest.raises(RewindError, match=str(path)):
        load_tensors(path)
    assert not (tmp_path / "PWNED").exists()


def test_missing_file_names_it(tmp_path):
    with pytest.raises(RewindError, match="nothing.safetensors: file not found"):
        load_tensors(tmp_path / "nothing.safetensors")


def test_same_tensors_and_metadata_give_the_same_bytes(tmp_path):
    tensors = {f"layer{i}.weight": torch.full((3,), float(i)) for i in range(8)}
    meta = {f"key{i}": str(i) for i in range(8)}
    payloads = set()
    for attempt in range(5):
        path = tmp_path / f"{attempt}.safetensors"
        save_tensors(path, dict(reversed(tensors.items())) if attempt % 2 else tensors, meta)
        payloads.add(path.read_bytes())
    assert len(payloads) == 1


def test_tensors_load_in_sorted_order_whatever_order_they_were_saved_in(tmp_path):
    names = ["b.weight", "a.weight", "c.bias", "a.bias"]
    save_tensors(tmp_path / "x.safetensors", {n: torch.zeros(2) for n in names})
    tensors, _ = load_tensors(tmp_path / "x.safetensors")
    assert list(tensors) == sorted(names)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_weight_is_refused_naming_the_file_and_tensor(tmp_path, bad):
    """A file whose hash is right (save_tensors wrote it) but holds NaN or infinity: a diverged
    or hand-made checkpoint would carry it into every accuracy computed from it."""
    path = tmp_path / "ckpt.safetensors"
    weights = torch.randn(4, 3)
    weights[2, 1] = bad
    save_tensors(path, {"a.weight": weights, "mask": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(RewindError, match=rf"^{path}: tensor 'a.weight' holds NaN or infinity"):
        load_tensors(path)
