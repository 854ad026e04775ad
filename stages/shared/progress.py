"""What a training run shows while it trains, and its live curves.

On a terminal (stderr a TTY) a tqdm bar per run: batches done, their rate, the epoch and its
loss. Anywhere else (a pipe: `dvc repro` under the Prefect flow, a log file, CI) a bar would be a
stream of carriage returns, so each epoch gets one log line instead, as it ends: the epoch line.
Its format is defined here once, with the parser the flow uses (`stage_fraction`) to turn the
lines into a stage's progress, so the two cannot drift apart (pipeline imports stages.shared,
never the reverse). Nothing shown here reaches an output file.
"""

import logging
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from rewind.train import EpochRecord
from stages.shared import parallel
from stages.shared.curves import Curves
from stages.shared.entry import under_dvc
from stages.shared.files import replace_folder

log = logging.getLogger("rewind")

EPOCH_LINE = "{label}: epoch {epoch}/{epochs}, run {run}/{runs}  lr {lr:.4g}  loss {loss:.4f}  train acc {accuracy:.4f}"
EPOCH_PATTERN = re.compile(r": epoch (\d+)/(\d+), run (\d+)/(\d+)  lr ")


def stage_fraction(line: str) -> float | None:
    """The fraction of its stage done that an epoch line reports (each of the stage's runs
    weighs the same); None for any other line."""
    found = EPOCH_PATTERN.search(line)
    if found is None:
        return None
    epoch, epochs, run, runs = map(int, found.groups())
    return (run - 1 + epoch / epochs) / runs


class Watch:
    """One training run of a stage, run `run` of `runs`, as it trains: its bar or epoch lines
    under `label` (the name its errors carry: "dense seed 1"), and its curves in `curves` (None:
    none kept). `train_resumably` drives it: `start`, `on_step` per step, `epoch`, `close`."""

    def __init__(self, label: str, run: int, runs: int, curves: Path | None = None) -> None:
        self.label, self.run, self.runs, self._output = label, run, runs, curves
        self._folder: Path | None = None
        self._bar: tqdm | None = None
        self._curves: Curves | None = None
        self._first_epoch = self._epochs = 0

    def start(self, done: Sequence[EpochRecord], steps: range, per_epoch: int, scratch: Path) -> None:
        """The run trains `steps` (of the dense run's time) and has trained the epochs in `done`;
        `scratch` is its scratch folder. Under DVC the curves go straight into their output folder,
        so `dvc plots show` draws a running stage (DVC removed the old ones, and puts them back if
        the stage fails); run by hand, into scratch, for `publish` to move once all went well."""
        self._first_epoch = steps.start // per_epoch
        self._epochs = math.ceil(steps.stop / per_epoch) - self._first_epoch if steps else 0
        if self._output is not None:
            self._folder = self._output if under_dvc() else scratch / "live"
            self._curves = Curves(self._folder, done)
        resumed = sum(record.steps for record in done)
        if sys.stderr.isatty() and resumed < len(steps):  # no bar for a run with nothing left to train
            row = parallel.slot()  # runs training side by side keep a row each
            self._bar = tqdm(
                total=len(steps), initial=resumed, desc=self.label, unit="batch", dynamic_ncols=True, position=row
            )
            self._bar.set_postfix_str(f"epoch {len(done)}/{self._epochs}")  # epochs done

    @property
    def on_step(self) -> Callable[[int], None] | None:
        """The loop's per-step callback: the bar's, or none without a bar (the loop pays nothing)."""
        return None if self._bar is None else (lambda _: self._bar.update())

    def epoch(self, record: EpochRecord) -> None:
        """An epoch ended (and its progress is saved): show it, log it to the curves."""
        number = record.epoch - self._first_epoch + 1
        if self._bar is not None:
            self._bar.set_postfix_str(f"epoch {number}/{self._epochs} lr {record.lr:.4g} loss {record.train_loss:.4f}")
        else:
            log.info(
                EPOCH_LINE.format(
                    label=self.label,
                    epoch=number,
                    epochs=self._epochs,
                    run=self.run,
                    runs=self.runs,
                    lr=record.lr,
                    loss=record.train_loss,
                    accuracy=record.train_accuracy,
                )
            )
        if self._curves is not None:
            self._curves.log(record)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def publish(self) -> None:
        """Put the curves into their output folder, if they were written elsewhere (see `start`)."""
        if self._folder is not None and self._folder != self._output:
            replace_folder(self._folder, self._output)
