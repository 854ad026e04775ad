"""Where every stage reads and writes; dvc.yaml declares the same paths.

The dense run and every pruning round are "points": a folder holding model.safetensors and
mask.safetensors. A round names the point it starts from with its `prev` in params.yaml,
relative to its strategy's folder (`../dense`, or `round-<k-1>` when pruning iteratively).
"""

import os
from pathlib import Path

PARAMS_OK = Path("results/params.ok")
DATASET = Path("data/prepared/dataset.safetensors")
RUNS = Path("runs")
DENSE = RUNS / "dense"
CHECKPOINTS = DENSE / "checkpoints"
MODEL = "model.safetensors"
MASK = "mask.safetensors"
TRAIN_LOG = "train.json"
TIMINGS = Path("timings")
METRICS = Path("results/metrics.json")
REPORTS = Path("reports")
REPORT = REPORTS / "report.md"
ACCURACY_CSV = REPORTS / "accuracy.csv"
ACCURACY_PNG = REPORTS / "accuracy_vs_sparsity.png"


def checkpoint(epoch: int) -> Path:
    """The dense weights after `epoch` epochs (epoch 0: the initialisation): a rewind point."""
    return CHECKPOINTS / f"epoch-{epoch:03d}.safetensors"


def timing(stage: str) -> Path:
    """Where a stage records its wall and compute seconds: apart from its results, so a rerun
    that reproduces the same weights leaves everything downstream up to date."""
    return TIMINGS / f"{stage}.json"


def round_dir(strategy: str, round_id: int) -> Path:
    return RUNS / strategy / f"round-{round_id}"


def point(strategy: str, prev: str) -> Path:
    """The folder a round starts from, resolving `prev` against the strategy's folder."""
    return Path(os.path.normpath(RUNS / strategy / prev))
