"""Stages `retrain@<strategy>-round<k>` and `control@<strategy>-round<k>`: retrain one round's
pruned networks, one per seed, as the strategy says. A compared strategy retrains on the masks its
prune stage made; a control on those of `controls.masks_from`'s same round, of which it keeps a
byte-identical copy. Every seed is retrained before any output is written."""

import argparse
import time

from rewind.checkpoint import atomic_write_bytes, read_file, save_tensors
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.entry import labelled, log, run_stage, strategy_round_arguments
from stages.shared.files import load_dataset, load_masks, new_model, write_json, write_timing
from stages.shared.parallel import Run, run_all, worker_count
from stages.shared.params import Params
from stages.shared.progress import Watch
from stages.shared.resumable import finish
from stages.shared.rounds import retrain
from stages.shared.training import train_log


def retrain_round(params: Params, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    strategy = params.retrained_strategy(args.strategy)
    start = layout.point(args.strategy, params.round(args.round).prev)
    out = layout.round_dir(args.strategy, args.round)
    masks_from = layout.round_dir(params.masks_strategy(args.strategy), args.round)
    kind = "control" if args.strategy in params.controls.strategies else "retrain"
    stage = f"{kind}@{args.strategy}-round{args.round}"
    device = device_for(params)
    data = load_dataset(device)
    architecture = new_model(params, data, seed=0)  # to check the masks against

    def seed_run(number: int, seed: int) -> Run:
        label = f"{args.strategy} round {args.round} seed {seed}"

        def train() -> tuple[Watch, tuple]:
            mask_file = layout.mask(masks_from, seed)
            masks = load_masks(mask_file, architecture, params.prune.exclude)
            watch = Watch(label, number, len(params.seeds), layout.live(out, seed))
            with labelled(label):
                key = f"{stage}/seed-{seed}"
                return watch, retrain(params, data, strategy, start, masks, [mask_file], seed, args.round, key, watch)

        return Run(label, train)

    runs = [seed_run(number, seed) for number, seed in enumerate(params.seeds, start=1)]
    results, compute = run_all(runs, worker_count(params.train.threads, device.type, len(runs)))
    for seed, (watch, (model, history, momentum)) in zip(params.seeds, results, strict=True):
        log.info(
            "%s round %d seed %d: %d epochs from %s weights",
            args.strategy,
            args.round,
            seed,
            len(history),
            strategy.weights,
        )
        if masks_from != out:
            atomic_write_bytes(layout.mask(out, seed), read_file(layout.mask(masks_from, seed)))
        save_tensors(layout.model(out, seed), model.state_dict())
        save_tensors(layout.momentum(out, seed), momentum)
        write_json(layout.history(out, seed), train_log(history))
        watch.publish()
    write_timing(stage, compute, started)
    finish(stage)


if __name__ == "__main__":
    run_stage(retrain_round, "Retrain one pruned round with one strategy, for every seed.", strategy_round_arguments)
