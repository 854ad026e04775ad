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

from rewind.metrics import accuracy_and_loss, evaluate
from rewind.schedule import Duration
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.entry import labelled, log, run_stage
from stages.shared.files import checked_weights, load_dataset, load_masks, new_model, write_json, write_timing
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
    data = load_dataset(device_for(params))
    architecture = new_model(params, data, seed=0)  # to check the dense files against
    strategies = {budget: dataclasses.replace(base, budget=Duration.parse(budget)) for budget in params.sweep.budgets}
    accuracies: dict[tuple[int, float], list[float]] = {}
    val_accuracies: dict[tuple[int, float], list[float]] = {}
    runs = len(params.sweep.sparsities) * len(params.seeds) * len(strategies)
    number = 0
    for sparsity in params.sweep.sparsities:
        for seed in params.seeds:
            dense_model, dense_mask = layout.model(layout.DENSE, seed), layout.mask(layout.DENSE, seed)
            weights = checked_weights(architecture, dense_model)
            masks = next_masks(
                params, args.strategy, weights, load_masks(dense_mask, architecture), 1.0 - sparsity, seed
            )
            for budget, strategy in strategies.items():
                number += 1
                label = f"sweep {args.strategy} budget {budget} at sparsity {sparsity:g} seed {seed}"
                with labelled(label):
                    key = f"{stage}/budget-{budget}/sparsity-{sparsity}/seed-{seed}"
                    watch = Watch(label, number, runs)  # no curves: the sweep's result is accuracy per budget
                    model, _, _ = retrain(
                        params, data, strategy, layout.DENSE, masks, [dense_mask], seed, 0, key, watch
                    )
                accuracies.setdefault((budget, sparsity), []).append(
                    evaluate(model, masks, data.x_test, data.y_test).accuracy
                )
                val_accuracies.setdefault((budget, sparsity), []).append(
                    accuracy_and_loss(model, data.x_val, data.y_val)[0]
                )
    for (budget, sparsity), values in accuracies.items():
        log.info("%s budget %d at sparsity %g: accuracy %s", args.strategy, budget, sparsity, values)
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
    write_timing(stage, time.perf_counter() - started, started)
    finish(stage)


if __name__ == "__main__":
    run_stage(
        sweep_strategy, "Retrain one-shot pruned networks with one strategy at every sweep budget.", sweep_arguments
    )
