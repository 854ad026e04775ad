"""A training run's curves in dvclive's format, the files `dvc plots` reads, written as each epoch
ends, so they can be watched while the run trains.

The folder is a declared output, so it must end the same whatever happened on the way. A run
resumed after a kill therefore starts it afresh (dvclive clears a folder it does not resume)
from the epochs already done, then logs the rest as they come: the same writes, in the same
order, as one uninterrupted run. Nothing in it carries wall-clock time (no timestamps on the
metrics, no dvc.yaml, no report, no experiment), so the same run gives the same bytes.
"""

from collections.abc import Sequence
from pathlib import Path

from rewind.train import EpochRecord

CURVES = ("train_loss", "train_accuracy", "lr")


class Curves:
    """One run's live curves, in `folder`: train_loss, train_accuracy and lr per epoch."""

    def __init__(self, folder: Path, done: Sequence[EpochRecord]) -> None:
        from dvclive import Live  # imports DVC: only stages that log curves pay for it

        self._live = Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None)
        for record in done:
            self.log(record)

    def log(self, record: EpochRecord) -> None:
        """Append one epoch to every curve, on disk now."""
        for name in CURVES:
            self._live.log_metric(name, getattr(record, name), timestamp=False, plot=True)
        self._live.next_step()

    def close(self) -> None:
        self._live.end()
