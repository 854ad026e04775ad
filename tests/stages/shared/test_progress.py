"""A training stage's progress as a user sees it: a bar on a terminal, epoch lines in a pipe (what
the Prefect flow reads), and the same output files either way."""

import hashlib
import re
import sys
from pathlib import Path

import pytest

from stages.shared.progress import EPOCH_LINE, EPOCH_PATTERN, stage_fraction
from tests.conftest import copy_of, make_project, on_terminal, run, tiny_params

TRAIN = [sys.executable, "-m", "stages.train"]
SEEDS, EPOCHS = 2, 4  # tiny_params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("progress") / "p", tiny_params())
    for stage in ("validate", "prepare"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    return project


def digests(project: Path) -> dict[str, str]:
    files = sorted((project / "runs/dense").rglob("*"))
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}


def test_a_bar_on_a_terminal_epoch_lines_in_a_pipe_and_the_same_outputs(prepared, tmp_path):
    terminal, pipe = copy_of(prepared, tmp_path / "terminal"), copy_of(prepared, tmp_path / "pipe")
    shown = on_terminal(TRAIN, terminal)
    assert re.search(r"\r(?!\n)", shown), "a bar redrawn in place"
    assert "batch/s" in shown and "dense seed 1" in shown and f"epoch {EPOCHS}/{EPOCHS}" in shown
    assert not EPOCH_PATTERN.search(shown), "no epoch lines under the bar"
    printed = run(TRAIN, pipe).stderr
    lines = [line for line in printed.splitlines() if EPOCH_PATTERN.search(line)]
    assert len(lines) == SEEDS * EPOCHS
    for seed in range(SEEDS):  # the runs train side by side: their lines interleave, each seed's in order
        last = [line.split("rewind: ")[1] for line in lines if f"dense seed {seed}: " in line][-1]
        assert last.startswith(f"dense seed {seed}: epoch {EPOCHS}/{EPOCHS}, run {seed + 1}/2  lr ")
    assert "\r" not in printed and "batch/s" not in printed
    assert digests(terminal) == digests(pipe), "what is shown never changes an output"
    assert any("/live/seed-1/plots/metrics/train_loss.tsv" in name for name in digests(pipe))


def test_the_flow_reads_the_fraction_of_the_stage_done_from_an_epoch_line():
    line = EPOCH_LINE.format(
        label="lrr round 1 seed 0", epoch=2, epochs=4, run=2, runs=4, lr=0.1, loss=1.0, accuracy=0.5
    )
    assert stage_fraction(f"2026-12-02 10:00:00 rewind: {line}") == pytest.approx((1 + 2 / 4) / 4)
    assert stage_fraction("2026-12-02 10:00:00 rewind: lrr round 1 seed 0: 4 epochs from final weights") is None
