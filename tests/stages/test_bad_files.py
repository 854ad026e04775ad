"""Every kind of file a stage loads, truncated, altered or replaced by a malicious pickle, is
refused with one line naming it; nothing is unpickled and no output is half-written."""

import pickle
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import make_project, run, tiny_params

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
def built(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("bad") / "p", tiny_params())
    for stage in ("validate", "prepare", "train"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    for stage in ("prune", "retrain"):
        for strategy in ("ft", "wr"):
            run([sys.executable, "-m", f"stages.{stage}", "--strategy", strategy, "--round", "0"], project)
    return project


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


def test_missing_input_names_the_file(built):
    mask = built / "runs/ft/round-1/masks/seed-0.safetensors"
    result = run([sys.executable, "-m", "stages.retrain", "--strategy", "ft", "--round", "1"], built, check=False)
    assert not mask.exists()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: runs/ft/round-1/masks/seed-0.safetensors: file not found"


def test_unknown_strategy_and_round_on_the_command_line(built):
    result = run([sys.executable, "-m", "stages.retrain", "--strategy", "magic", "--round", "0"], built, check=False)
    assert result.returncode == 2 and "compare: strategy 'magic' is not compared" in result.stderr
    result = run([sys.executable, "-m", "stages.prune", "--strategy", "ft", "--round", "7"], built, check=False)
    assert result.returncode == 2 and "rounds: no round 7" in result.stderr


def test_divergence_names_strategy_round_and_epoch_and_keeps_inputs(built):
    params = built / "params.yaml"
    original = params.read_text()
    mask = built / "runs/ft/round-0/masks/seed-0.safetensors"
    before = mask.read_bytes()
    try:
        params.write_text(original.replace("lr: 0.1", "lr: 1.0e+30"))
        run([sys.executable, "-m", "stages.prune", "--strategy", "lrr", "--round", "0"], built)
        result = run([sys.executable, "-m", "stages.retrain", "--strategy", "lrr", "--round", "0"], built, check=False)
    finally:
        params.write_text(original)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: lrr round 0 seed 0: training diverged: loss is nan in epoch 1 of 2"), error
    assert mask.read_bytes() == before
    assert not (built / "runs/lrr/round-0/models").exists()
