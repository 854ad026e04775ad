"""A training run's curves in dvclive's format, the files `dvc plots` reads, written as each epoch
ends, so they can be watched while the run trains.

dvclive's own writers make the files (`Metric.dump`: one TSV per curve, `dump_json`: the
summary), not its `Live` logger: `Live` opens the DVC repository it runs in (and initialises one
where there is none) in every training run, which costs each stage DVC's import and touches DVC's
state database from inside a stage that DVC itself is running.

The folder is a declared output, so it must end the same whatever happened on the way. A run
resumed after a kill therefore starts it afresh from the epochs already done, then logs the rest
as they come: the same writes, in the same order, as one uninterrupted run. Nothing in it carries
wall-clock time (no timestamps), so the same run gives the same bytes.
"""

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from rewind.train import EpochRecord

CURVES = ("train_loss", "train_accuracy", "lr")


class Curves:
    """One run's live curves, in `folder`: train_loss, train_accuracy and lr per epoch (dvclive's
    `plots/metrics/<name>.tsv`), and the last epoch's values (`metrics.json`)."""

    def __init__(self, folder: Path, done: Sequence[EpochRecord]) -> None:
        # imported here: dvclive brings requests and parts of DVC (README: Performance), which the
        # stages importing this module without keeping curves (prune, sweep) need not pay
        from dvclive.plots import Metric

        shutil.rmtree(folder, ignore_errors=True)
        self._summary = folder / "metrics.json"
        self._metrics = [Metric(name, str(folder / "plots")) for name in CURVES]
        self._step = 0
        self._dump_json({})
        for metric in self._metrics:  # every curve exists, empty if the run trains no epoch
            metric.output_path.write_text(f"step\t{metric.name}{os.linesep}", encoding="utf-8")
        for record in done:
            self.log(record)

    def log(self, record: EpochRecord) -> None:
        """Append one epoch to every curve, on disk now."""
        for metric in self._metrics:
            metric.step = self._step
            metric.dump(getattr(record, metric.name), timestamp=False)
        self._dump_json({name: getattr(record, name) for name in CURVES} | {"step": self._step})
        self._step += 1

    def _dump_json(self, values: dict) -> None:
        from dvclive.serialize import dump_json

        dump_json(values, self._summary)
