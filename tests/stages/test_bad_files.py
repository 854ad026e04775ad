"""Every kind of file a stage loads, truncated, altered or replaced by a malicious pickle, is
refused with one line naming it; nothing is unpickled and no output is half-written."""

import os
import pickle
import resource
import signal
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from rewind.checkpoint import load_tensors, save_tensors
from tests.conftest import copy_of, run

FILES = {
    "dataset": ("data/prepared/dataset.safetensors", ["stages.train"]),
    "rewind point": (
        "runs/dense/checkpoints/seed-1/epoch-002.safetensors",
        ["stages.retrain", "--strategy", "wr", "--round", "0"],
    ),
    "dense model": ("runs/dense/models/seed-0.safetensors", ["stages.prune", "--strategy", "ft", "--round", "0"]),
    "dense mask": ("runs/dense/masks/seed-1.safetensors", ["stages.prune", "--strategy", "ft", "--round", "0"]),
    "round mask": ("runs/ft/round-0/masks/seed-0.safetensors", ["stages.retrain", "--strategy", "ft", "--round", "0"]),
    "round model": ("runs/ft/round-0/models/seed-1.safetensors", ["stages.prune", "--strategy", "ft", "--round", "1"]),
}


class Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def flip_byte(path: Path) -> None:
    payload = bytearray(path.read_bytes())
    payload[-3] ^= 0x55
    path.write_bytes(bytes(payload))


def pickle_bomb(path: Path) -> None:
    path.write_bytes(pickle.dumps(Exploit()))


def torch_pickle(path: Path) -> None:
    torch.save({"weight": Exploit()}, path)


@pytest.fixture(scope="module")
def built(reproduced, tmp_path_factory) -> Path:
    """The reproduced tiny project, copied: every file a stage loads is there to damage."""
    return copy_of(reproduced[0], tmp_path_factory.mktemp("bad") / "p")


@pytest.mark.parametrize("damage", [truncate, flip_byte, pickle_bomb, torch_pickle])
@pytest.mark.parametrize("kind", list(FILES))
def test_damaged_file_is_refused_naming_it(built, kind, damage):
    relative, command = FILES[kind]
    path = built / relative
    original = path.read_bytes()
    try:
        damage(path)
        result = run([sys.executable, "-m", *command], built, check=False)
    finally:
        path.write_bytes(original)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and relative in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (built / "PWNED").exists()
    assert not list(built.rglob("*.tmp")), "no half-written file left behind"


def with_a_nan(path: Path) -> None:
    """The file rewritten by save_tensors (its hash right) with one NaN in its first floating tensor."""
    tensors, meta = load_tensors(path)
    name = next(name for name, tensor in tensors.items() if tensor.is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    save_tensors(path, tensors, meta)


@pytest.mark.parametrize("kind", [kind for kind in FILES if "mask" not in kind])  # masks hold booleans
def test_a_non_finite_weight_is_refused_naming_the_file(built, kind):
    relative, command = FILES[kind]
    path = built / relative
    original = path.read_bytes()
    try:
        with_a_nan(path)
        error = stage(built, *command)
    finally:
        path.write_bytes(original)
    assert f"{relative}: tensor '" in error and "holds NaN or infinity" in error, error


def test_missing_input_names_the_file(built):
    mask = built / "runs/ft/round-1/masks/seed-0.safetensors"
    aside = mask.with_name("aside")
    mask.rename(aside)
    try:
        result = run([sys.executable, "-m", "stages.retrain", "--strategy", "ft", "--round", "1"], built, check=False)
    finally:
        aside.rename(mask)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: runs/ft/round-1/masks/seed-0.safetensors: file not found"


def test_unknown_strategy_and_round_on_the_command_line(built):
    result = run([sys.executable, "-m", "stages.retrain", "--strategy", "magic", "--round", "0"], built, check=False)
    assert result.returncode == 2 and "compare: strategy 'magic' is neither compared nor a control" in result.stderr
    result = run([sys.executable, "-m", "stages.prune", "--strategy", "ft", "--round", "7"], built, check=False)
    assert result.returncode == 2 and "rounds: no round 7" in result.stderr


def test_divergence_names_strategy_round_and_epoch_and_keeps_inputs(built):
    params = built / "params.yaml"
    original = params.read_text()
    mask = built / "runs/lrr/round-0/masks/seed-0.safetensors"
    models = sorted((built / "runs/lrr/round-0/models").iterdir())
    before = {path: path.read_bytes() for path in [mask, *models]}
    try:
        params.write_text(original.replace("lr: 0.1", "lr: 1.0e+30"))
        result = run([sys.executable, "-m", "stages.retrain", "--strategy", "lrr", "--round", "0"], built, check=False)
    finally:
        params.write_text(original)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(
        "error: lrr round 0 seed 0: training diverged: loss is nan in epoch 3 at steps 22-33 (lr 1e+29)"
    ), error
    assert {path: path.read_bytes() for path in before} == before, "the input mask and the last good models stay"


def stage(built: Path, *args: str, **popen):
    """A stage run that must end within a minute (a FIFO read would block forever), in one line."""
    result = run([sys.executable, "-m", *args], built, check=False, timeout=60, **popen)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr
    return errors[0]


@contextmanager
def replaced(path: Path, make: Callable[[Path], None]):
    """`path` replaced by what `make` puts there, then restored."""
    backup = path.with_name(path.name + ".bak")
    path.rename(backup)
    try:
        make(path)
        yield
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        elif path.is_symlink() or path.exists():
            path.unlink()
        backup.rename(path)


def save(tensors: dict):
    return lambda path: save_tensors(path, tensors)


def odd_files(built: Path) -> dict:
    """Valid-looking or strange things where a stage expects a checkpoint or a mask."""
    dense_mask, _ = load_tensors(built / "runs/dense/masks/seed-0.safetensors")
    dense_model, _ = load_tensors(built / "runs/dense/models/seed-0.safetensors")
    round_mask, _ = load_tensors(built / "runs/ft/round-0/masks/seed-0.safetensors")
    return {
        "a FIFO": (os.mkfifo, "not a regular file"),
        "a symlink to a folder": (lambda path: path.symlink_to("/etc"), "not a regular file"),
        "a folder": (lambda path: path.mkdir(), "not a regular file"),
        "other tensor names": (save({"weight": dense_model["1.weight"]}), "weights do not fit the model"),
        "a transposed mask": (save(dense_mask | {"3.weight": dense_mask["3.weight"].T.contiguous()}), "has shape"),
        "a mask without a layer": (save({k: v for k, v in round_mask.items() if k != "3.weight"}), "no mask for"),
    }


ODD_CASES = [
    # (what, file replaced, stage reading it)
    ("a FIFO", "runs/dense/masks/seed-0.safetensors", ["stages.prune", "--strategy", "ft", "--round", "0"]),
    ("a FIFO", "runs/ft/round-0/masks/seed-0.safetensors", ["stages.retrain", "--strategy", "ft", "--round", "0"]),
    (
        "a symlink to a folder",
        "runs/dense/models/seed-0.safetensors",
        ["stages.prune", "--strategy", "ft", "--round", "0"],
    ),
    ("a folder", "data/prepared/dataset.safetensors", ["stages.train"]),
    (
        "other tensor names",
        "runs/dense/models/seed-0.safetensors",
        ["stages.prune", "--strategy", "ft", "--round", "0"],
    ),
    ("a transposed mask", "runs/dense/masks/seed-0.safetensors", ["stages.prune", "--strategy", "ft", "--round", "0"]),
    (
        "a mask without a layer",
        "runs/ft/round-0/masks/seed-0.safetensors",
        ["stages.retrain", "--strategy", "ft", "--round", "0"],
    ),
    ("a transposed mask", "runs/dense/masks/seed-0.safetensors", ["stages.evaluate"]),
]


@pytest.mark.parametrize(("what", "relative", "command"), ODD_CASES)
def test_odd_files_are_refused_in_one_line_naming_them(built, what, relative, command):
    make, expected = odd_files(built)[what]
    outputs = {p: p.read_bytes() for p in sorted((built / "runs").rglob("*.safetensors"))}
    with replaced(built / relative, make):
        error = stage(built, *command)
    assert relative in error and expected in error, error
    assert {p: p.read_bytes() for p in sorted((built / "runs").rglob("*.safetensors"))} == outputs


def test_a_strategy_outside_the_sweep_is_refused_and_writes_nothing(built):
    error = stage(built, "stages.sweep", "--strategy", "wr")
    assert error == "error: params.yaml: sweep.strategies: strategy 'wr' is not swept; swept: ['ft', 'lrr']"
    assert not (built / "results/sweep/wr.json").exists()


def test_divergence_names_the_dense_seed_and_the_sweep_point(built):
    params = built / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original.replace("lr: 0.1", "lr: 1.0e+30"))
        dense = stage(built, "stages.train")
        sweep = stage(built, "stages.sweep", "--strategy", "lrr")
    finally:
        params.write_text(original)
    assert dense.startswith(
        "error: dense seed 0: training diverged: loss is nan in epoch 1 at steps 0-11 (lr 1e+30)"
    ), dense
    assert sweep.startswith("error: sweep lrr budget 1 at sparsity 0.9 seed 0: training diverged"), sweep


def test_a_write_that_fails_names_the_file(built):
    """A file-size limit stands in for a full disk: the write fails (EFBIG) and the error names the
    file; the previous file stays whole and no temporary file is left."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    target = built / "runs/ft/round-0/models/seed-0.safetensors"
    before = target.read_bytes()
    error = stage(built, "stages.retrain", "--strategy", "ft", "--round", "0", preexec_fn=limit_file_size)
    # the first write past the limit is the progress file of the first epoch
    progress = ".rewind/scratch/retrain-ft-round0/seed-0/progress.safetensors"
    assert error == f"error: ft round 0 seed 0: {progress}: cannot write: File too large", error
    assert target.read_bytes() == before
    assert not list(built.rglob("*.tmp"))
