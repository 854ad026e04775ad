"""Where every stage reads and writes; dvc.yaml declares the same paths.

The dense run and every pruning round are "points": a folder with `models/`, `masks/` and
`momentum/`, one `seed-<s>.safetensors` in each per seed. A round names the point it starts from with its
`prev` in params.yaml, relative to its strategy's folder (`../dense`, or `round-<k-1>`).
"""

import os
from pathlib import Path

# What a copy of the project needs to run the pipeline and show its plots (besides its
# params.yaml and .dvc/config, whose plots.html_template names plots/template.html): the benchmark
# and the tests make such copies.
PROJECT_FILES = ("rewind", "stages", "pipeline", "plugins", "paper", "plots", "dvc.yaml", ".dvcignore", ".gitignore")
PARAMS_OK = Path("results/params.ok")
DATASET = Path("data/prepared/dataset.safetensors")
RUNS = Path("runs")
DENSE = RUNS / "dense"
CHECKPOINTS = DENSE / "checkpoints"
TIMINGS = Path(".rewind/timings")
METRICS = Path("results/metrics.json")  # every value, mean over seeds: not a DVC metric (too many)
HEADLINE = Path("results/headline.json")  # the DVC metric: the few numbers that answer the question
EVALUATIONS = Path("results/evaluations.json")
SWEEP = Path("results/sweep")
REPORTS = Path("reports")
REPORT = REPORTS / "report.md"
ACCURACY_CSV = REPORTS / "accuracy.csv"
BUDGET_CSV = REPORTS / "budget.csv"
ACCURACY_PNG = REPORTS / "accuracy_vs_sparsity.png"
BUDGET_PNG = REPORTS / "accuracy_vs_budget.png"
DENSE_PNG = REPORTS / "dense_training.png"


def model(point: Path, seed: int) -> Path:
    return point / "models" / f"seed-{seed}.safetensors"


def mask(point: Path, seed: int) -> Path:
    return point / "masks" / f"seed-{seed}.safetensors"


def momentum(point: Path, seed: int) -> Path:
    """The optimizer's momentum at the end of the training that produced the point's model: what a
    strategy with `momentum: restored` starts from when it starts from that model."""
    return point / "momentum" / f"seed-{seed}.safetensors"


def history(point: Path, seed: int) -> Path:
    """Per-epoch rate, loss and train accuracy of the training that produced the point's model."""
    return point / "history" / f"seed-{seed}.json"


def live(point: Path, seed: int) -> Path:
    """The per-epoch curves, in dvclive's format, of the training that produced the point's model."""
    return point / "live" / f"seed-{seed}"


def checkpoint(seed: int, epoch: int) -> Path:
    """The dense weights after `epoch` epochs (epoch 0: the initialisation): a rewind point."""
    return CHECKPOINTS / f"seed-{seed}" / f"epoch-{epoch:03d}.safetensors"


def checkpoint_momentum(seed: int, epoch: int) -> Path:
    """The dense run's momentum after `epoch` epochs (none at epoch 0), beside its rewind point."""
    return CHECKPOINTS / f"seed-{seed}" / f"momentum-{epoch:03d}.safetensors"


def step_checkpoint(seed: int, step: int) -> Path:
    """The dense weights after `step` steps, kept between epochs for an iteration budget."""
    return CHECKPOINTS / f"seed-{seed}" / f"step-{step:07d}.safetensors"


def step_checkpoint_momentum(seed: int, step: int) -> Path:
    return CHECKPOINTS / f"seed-{seed}" / f"momentum-step-{step:07d}.safetensors"


def rewind_point(seed: int, step: int, steps_per_epoch: int) -> tuple[Path, Path]:
    """The dense weights and momentum after `step` steps: an epoch's files, or a step's."""
    if step % steps_per_epoch == 0:
        return checkpoint(seed, step // steps_per_epoch), checkpoint_momentum(seed, step // steps_per_epoch)
    return step_checkpoint(seed, step), step_checkpoint_momentum(seed, step)


def timing(stage: str) -> Path:
    """Where a stage records its wall and compute seconds for the benchmark: not a DVC output,
    since seconds differ on every run and would make dvc.lock change with each one."""
    return TIMINGS / f"{stage}.json"


def round_dir(strategy: str, round_id: int) -> Path:
    return RUNS / strategy / f"round-{round_id}"


def point(strategy: str, prev: str) -> Path:
    """The folder a round starts from, resolving `prev` against the strategy's folder."""
    return Path(os.path.normpath(RUNS / strategy / prev))


def sweep_result(strategy: str) -> Path:
    """A strategy's budget sweep: budget → sparsity → accuracy per seed."""
    return SWEEP / f"{strategy}.json"


def sparsity_key(sparsity: float) -> str:
    """A sweep sparsity as a key of the sweep files: the shortest text that reads back as the same
    float, so two distinct sparsities never share a key (with `:g`, 0.9 and 0.9000001 did)."""
    return repr(float(sparsity))


EXPORTS = Path("exports")


def export_dir(strategy: str, round_id: int) -> Path:
    """One round's shipped networks, every seed's, and their sizes (`stages/export.py`)."""
    return EXPORTS / strategy / f"round-{round_id}"


def export_file(folder: Path, seed: int, kind: str) -> Path:
    """A seed's export of one kind: `compact.safetensors`, `slim.safetensors` or `onnx`."""
    return folder / f"seed-{seed}.{kind}"


def export_sizes(folder: Path) -> Path:
    return folder / "sizes.json"
