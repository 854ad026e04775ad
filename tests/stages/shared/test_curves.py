"""Live curves end the same however the run got there: a run killed after some epochs and resumed
writes the bytes of one that never stopped, and nothing in them depends on the clock."""

import json
from pathlib import Path

from rewind.train import EpochRecord
from stages.shared.curves import CURVES, Curves

HISTORY = [EpochRecord(epoch, 0.1 / (epoch + 1), 2.0 / (epoch + 1), epoch / 10, 11, 0.01 * epoch) for epoch in range(6)]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def logged(folder: Path, done: list[EpochRecord], rest: list[EpochRecord]) -> None:
    curves = Curves(folder, done)
    for record in rest:
        curves.log(record)


def test_a_resumed_run_writes_the_bytes_of_an_uninterrupted_one(tmp_path):
    logged(tmp_path / "whole", [], HISTORY)
    killed = Curves(tmp_path / "resumed", [])
    for record in HISTORY[:4]:  # the kill came after epoch 4's curves, before its progress was saved
        killed.log(record)
    logged(tmp_path / "resumed", HISTORY[:3], HISTORY[3:])
    whole = files(tmp_path / "whole")
    assert whole == files(tmp_path / "resumed")
    assert {f"plots/metrics/{name}.tsv" for name in CURVES} <= set(whole)
    loss = whole["plots/metrics/train_loss.tsv"].decode().splitlines()
    assert loss[0] == "step\ttrain_loss" and len(loss) == 1 + len(HISTORY), "one row an epoch, no timestamp column"
    assert json.loads(whole["metrics.json"]) == {"train_loss": 2.0 / 6, "train_accuracy": 0.5, "lr": 0.1 / 6, "step": 5}


def test_a_run_with_no_epochs_leaves_an_empty_summary(tmp_path):
    """A strategy with budget 0 (`none`) still has its declared folder."""
    logged(tmp_path / "none", [], [])
    header = {f"plots/metrics/{name}.tsv": f"step\t{name}\n".encode() for name in CURVES}
    assert files(tmp_path / "none") == {"metrics.json": b"{}\n"} | header, "every curve, empty"
