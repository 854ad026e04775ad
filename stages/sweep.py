"""Stage `sweep@<strategy>-<budget>`: accuracy after one-shot pruning to each sweep sparsity and
retraining for `budget` epochs, for every seed (the paper's accuracy-vs-retraining-epochs curves).

It reuses the prune and retrain stages' functions: the masks are pruned from the dense network
exactly as a one-shot `prune` stage would, then retrained exactly as `retrain` would.
"""

import argparse
import dataclasses
import time

from rewind.checkpoint import load_tensors
from rewind.metrics import evaluate
from stages import layout
from stages.common import device_for, load_dataset, load_masks, log, run_stage, write_json, write_timing
from stages.params import Params
from stages.prune import next_masks
from stages.resumable import finish
from stages.retrain import retrain


def sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, help="a strategy named in params.yaml `sweep.strategies`")
    parser.add_argument("--budget", type=int, required=True, help="retraining epochs, from `sweep.budgets`")


def sweep_point(params: Params, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    strategy = dataclasses.replace(params.strategy(args.strategy), budget=args.budget)
    stage = f"sweep@{args.strategy}-{args.budget}"
    data = load_dataset(device_for(params))
    results: dict[str, dict] = {}
    for sparsity in params.sweep.sparsities:
        accuracies = []
        for seed in params.seeds:
            dense_model, dense_mask = layout.model(layout.DENSE, seed), layout.mask(layout.DENSE, seed)
            masks = next_masks(
                params, args.strategy, load_tensors(dense_model)[0], load_masks(dense_mask), 1.0 - sparsity, seed
            )
            key = f"{stage}/sparsity-{sparsity}/seed-{seed}"
            model, _ = retrain(params, data, strategy, dense_model, masks, [dense_mask], seed, 0, key)
            accuracies.append(evaluate(model, masks, data.x_test, data.y_test).accuracy)
        results[f"{sparsity:g}"] = {"accuracy": accuracies, "seeds": list(params.seeds)}
        log.info("%s budget %d at sparsity %g: accuracy %s", args.strategy, args.budget, sparsity, accuracies)
    write_json(
        layout.sweep_result(args.strategy, args.budget),
        {"strategy": args.strategy, "budget": args.budget, "sparsities": results},
    )
    write_timing(stage, time.perf_counter() - started, started)
    finish(stage)


if __name__ == "__main__":
    run_stage(sweep_point, "Retrain one-shot pruned networks with one strategy and one budget.", sweep_arguments)
