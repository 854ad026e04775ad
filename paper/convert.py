"""Ship the paper's CIFAR-10 results with the project: `python paper/convert.py <folder>`.

<folder> holds `pruned.csv` and `dense.csv`, every run Renda, Frankle & Carbin published with their
code (converted row for row from its pandas pickles; see that folder's README). This keeps the rows
the report can set beside a rewind run, the CIFAR-10 ResNets, per trial and with the numbers
unchanged, and writes them to `paper/pruned.csv` and `paper/dense.csv` (the report takes medians).
"""

import csv
import sys
from pathlib import Path

NETWORKS = ("resnet20", "resnet56", "resnet110")
PRUNED_COLUMNS = (
    "network",
    "prune_method",
    "is_iterative",
    "strategy",
    "density",
    "retrain_time",
    "trial",
    "test_acc",
    "val_acc",
)
DENSE_COLUMNS = ("network", "test_acc", "val_acc")
HERE = Path(__file__).resolve().parent


def convert(source: Path, target: Path = HERE) -> dict[str, int]:
    """Copy the CIFAR-10 ResNet rows of `source`'s CSVs to `target`; the rows kept per file."""
    kept = {}
    for name, columns in (("pruned.csv", PRUNED_COLUMNS), ("dense.csv", DENSE_COLUMNS)):
        with open(source / name, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["network"] in NETWORKS]
        with open(target / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        kept[name] = len(rows)
    return kept


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1], "pruned.csv").is_file():
        raise SystemExit("usage: python paper/convert.py <folder holding the paper's pruned.csv and dense.csv>")
    print(convert(Path(sys.argv[1])))
