"""Stage `sweep@<strategy>`: test and validation accuracy after one-shot pruning to each sweep
sparsity and retraining for each budget, for every seed (the paper's accuracy-vs-retraining-epochs
curves; the report picks each strategy's best budget on validation).

It shares the prune and retrain stages' code: the masks are pruned from the dense network
exactly as a one-shot `prune` stage would, then retrained exactly as `retrain` would. All budgets
of a strategy run in one process, so the sweep costs one stage start per strategy, not one per point.
"""

import argparse
import dataclasses
import time

from torch import nn

from rewind.metrics import accuracy_and_loss, evaluate
from rewind.schedule import Duration
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.entry import labelled, log, run_stage
from stages.shared.files import checked_weights, load_dataset, load_masks, new_model, write_json, write_timing
from stages.shared.parallel import Run, run_all, worker_count
from stages.shared.params import Params
from stages.shared.progress import Watch
from stages.shared.resumable import finish
from stages.shared.rounds import next_masks, retrain


def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, help="a strategy named in params.yaml `sweep.strategies`")


def sweep_strategy(params: Params, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    stage = f"sweep@{args.strategy}"
    base = params.swept_strategy(args.strategy)
    device = device_for(params)
    data = load_dataset(device)
    architecture = new_model(params, data, seed=0)  # to check the dense files against
    strategies = {budget: dataclasses.replace(base, budget=Duration.parse(budget)) for budget in params.sweep.budgets}
    points = [(s, seed, b) for s in params.sweep.sparsities for seed in params.seeds for b in params.sweep.budgets]
    masks = {}
    for sparsity in params.sweep.sparsities:
        for seed in params.seeds:
            weights = checked_weights(architecture, layout.model(layout.DENSE, seed))
            dense = load_masks(layout.mask(layout.DENSE, seed), architecture)
            masks[sparsity, seed] = next_masks(params, args.strategy, weights, dense, 1.0 - sparsity, seed)

    def point_run(number: int, sparsity: float, seed: int, budget: int | str) -> Run:
        label = f"sweep {args.strategy} budget {budget} at sparsity {sparsity:g} seed {seed}"

        def train() -> nn.Module:
            scratch = f"{stage}/budget-{budget}/sparsity-{sparsity}/seed-{seed}"
            watch = Watch(label, number, len(points))  # no curves: the sweep's result is accuracy per budget
            strategy, dense_mask = strategies[budget], layout.mask(layout.DENSE, seed)
            with labelled(label):
                model, _, _ = retrain(
                    params, data, strategy, layout.DENSE, masks[sparsity, seed], [dense_mask], seed, 0, scratch, watch
                )
            return model

        return Run(label, train)

    runs = [point_run(number, *point) for number, point in enumerate(points, start=1)]
    models, compute = run_all(runs, worker_count(params.train.threads, device.type, len(runs)))
    accuracies: dict[tuple[int | str, float], list[float]] = {}
    val_accuracies: dict[tuple[int | str, float], list[float]] = {}
    for (sparsity, seed, budget), model in zip(points, models, strict=True):
        accuracies.setdefault((budget, sparsity), []).append(
            evaluate(model, masks[sparsity, seed], data.x_test, data.y_test).accuracy
        )
        val_accuracies.setdefault((budget, sparsity), []).append(accuracy_and_loss(model, data.x_val, data.y_val)[0])
    for (budget, sparsity), values in accuracies.items():
        log.info("%s budget %s at sparsity %g: accuracy %s", args.strategy, budget, sparsity, values)
    results = {
        str(budget): {
            layout.sparsity_key(sparsity): {
                "accuracy": accuracies[budget, sparsity],
                "val_accuracy": val_accuracies[budget, sparsity],
                "seeds": list(params.seeds),
            }
            for sparsity in params.sweep.sparsities
        }
        for budget in params.sweep.budgets
    }
    write_json(layout.sweep_result(args.strategy), {"strategy": args.strategy, "budgets": results})
    write_timing(stage, compute, started)
    finish(stage)


if __name__ == "__main__":
    run_stage(
        sweep_strategy, "Retrain one-shot pruned networks with one strategy at every sweep budget.", sweep_arguments
    )
