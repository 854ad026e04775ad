"""Stage `evaluate`: test accuracy, loss, sparsity, size and FLOPs of the dense networks and of
every round, for every seed, and accuracy and loss on the validation split (what the report
chooses on).

Two files: `results/evaluations.json` with every seed's numbers, and `results/metrics.json` with
their mean and standard deviation, dense → values and strategy → round<k> → values. Neither is a
DVC metric: hundreds of values bury the answer in `dvc exp show`; the report stage writes the
headline metric (results/headline.json) from these.
"""

import argparse
from pathlib import Path

from rewind.data import Dataset
from rewind.metrics import accuracy_and_loss, evaluate
from rewind.stats import summarize
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.entry import log, run_stage
from stages.shared.files import load_dataset, load_masks, load_model, write_json
from stages.shared.params import Params


def evaluate_all(params: Params, args: argparse.Namespace) -> None:
    data = load_dataset(device_for(params))
    points = {"dense": {"dense": layout.DENSE}} | {
        strategy: {f"round{spec.id}": layout.round_dir(strategy, spec.id) for spec in params.rounds}
        for strategy in params.retrained
    }
    per_seed = {
        group: {
            name: {f"seed{s}": measure(params, data, folder, s) for s in params.seeds} for name, folder in items.items()
        }
        for group, items in points.items()
    }
    evaluations = {"dense": per_seed["dense"]["dense"]} | {s: per_seed[s] for s in params.retrained}
    metrics = {"dense": aggregate(evaluations["dense"])} | {
        s: {key: aggregate(seeds) for key, seeds in per_seed[s].items()} for s in params.retrained
    }
    write_json(layout.EVALUATIONS, evaluations)
    write_json(layout.METRICS, metrics)
    log.info(
        "dense test accuracy %.4f ± %.4f over %d seeds; %d strategies x %d rounds evaluated",
        metrics["dense"]["accuracy"],
        metrics["dense"]["accuracy_std"],
        len(params.seeds),
        len(params.retrained),
        len(params.rounds),
    )


def measure(params: Params, data: Dataset, folder: Path, seed: int) -> dict:
    model = load_model(params, data, layout.model(folder, seed), data.x_test.device)
    exclude = None if folder == layout.DENSE else params.prune.exclude
    masks = load_masks(layout.mask(folder, seed), model, exclude)
    val_accuracy, val_loss = accuracy_and_loss(model, data.x_val, data.y_val)
    slim = params.prune.granularity == "filter"  # whole filters die only under filter pruning
    measured = evaluate(model, masks, data.x_test, data.y_test, slim).as_dict()
    return measured | {"val_accuracy": val_accuracy, "val_loss": val_loss, "test_examples": len(data.y_test)}


def aggregate(seeds: dict[str, dict]) -> dict:
    """Mean of every value over seeds, plus the standard deviation of accuracy and the count."""
    runs = list(seeds.values())
    summary = {key: summarize([run[key] for run in runs]).mean for key in runs[0]}
    summary["accuracy_std"] = summarize([run["accuracy"] for run in runs]).std
    summary["seeds"] = len(runs)
    return summary


if __name__ == "__main__":
    run_stage(evaluate_all, "Evaluate the dense networks and every retrained round on the test set.")
