"""Stage `train`: the dense network for every seed, with its weights and momentum saved after
every epoch (the rewind points), its per-epoch curves logged with dvclive as each epoch ends.

Every seed trains first, its rewind points kept in the scratch folder as it goes; only then are
the outputs written, the rewind points linked from scratch. A kill anywhere (in a seed, between
seeds, among the writes) leaves scratch whole, and the rerun resumes and writes every output.
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rewind.checkpoint import save_tensors
from rewind.data import Dataset
from rewind.optim import MaskedSGD
from rewind.prune import Masks, full_masks
from rewind.train import EpochRecord, steps_per_epoch
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.entry import labelled, log, run_stage
from stages.shared.files import load_dataset, new_model, place_for_training, write_json, write_timing
from stages.shared.parallel import Run, run_all, worker_count
from stages.shared.params import Params
from stages.shared.progress import Watch
from stages.shared.resumable import fingerprint_of, finish, publish, scratch_dir, train_resumably
from stages.shared.training import batch_options, sgd, train_log

STAGE = "train"


@dataclass(frozen=True)
class DenseRun:
    weights: dict[str, torch.Tensor]
    momentum: dict[str, torch.Tensor]
    masks: Masks
    history: list[EpochRecord]
    checkpoints: list[Path]  # in scratch: weights and momentum after epoch 0 (the initialisation) … T


def train_dense(params: Params, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    device = device_for(params)
    data = load_dataset(device)

    def seed_run(number: int, seed: int) -> Run:
        label = f"dense seed {seed}"

        def train() -> tuple[Watch, DenseRun]:
            watch = Watch(label, number, len(params.seeds), layout.live(layout.DENSE, seed))
            with labelled(label):
                return watch, train_seed(params, data, seed, watch)

        return Run(label, train)

    runs = [seed_run(number, seed) for number, seed in enumerate(params.seeds, start=1)]
    results, compute = run_all(runs, worker_count(params.train.threads, device.type, len(runs)))
    for seed, (watch, run) in zip(params.seeds, results, strict=True):
        log.info("dense seed %d: %d epochs, final train loss %.4f", seed, len(run.history), run.history[-1].train_loss)
        publish(run.checkpoints, layout.checkpoint(seed, 0).parent)
        save_tensors(layout.model(layout.DENSE, seed), run.weights)
        save_tensors(layout.momentum(layout.DENSE, seed), run.momentum)
        save_tensors(layout.mask(layout.DENSE, seed), run.masks)
        write_json(layout.history(layout.DENSE, seed), train_log(run.history))
        watch.publish()
    write_timing(STAGE, compute, started)
    finish(STAGE)


def train_seed(params: Params, data: Dataset, seed: int, watch: Watch) -> DenseRun:
    """One seed's dense run, resumed from scratch if an earlier one was killed."""
    device = data.x_train.device
    model = place_for_training(new_model(params, data, seed), params, device)
    masks = full_masks(model)
    run = f"{STAGE}/seed-{seed}"
    per_epoch = steps_per_epoch(len(data.y_train), params.train.batch_size)
    kept_steps = [epoch * per_epoch for epoch in range(params.train.epochs + 1)] + params.train.rewind_iterations
    # in scratch, by step: the weights and momentum files every kept step has
    files = {
        step: tuple(scratch_dir(run) / p.name for p in layout.rewind_point(seed, step, per_epoch))
        for step in kept_steps
    }

    def keep(step: int, trained: nn.Module, optimizer: MaskedSGD | None) -> None:
        weights, momentum = files[step]
        save_tensors(weights, trained.state_dict())
        save_tensors(momentum, optimizer.state_dict() if optimizer else {})  # none before a step

    schedule = params.train.lr_schedule(per_epoch)
    history, final_momentum = train_resumably(
        run,
        fingerprint_of(params, [layout.DATASET], seed),
        watch,
        model,
        data,
        schedule.rates(0, schedule.total_steps),
        masks,
        sgd(params),
        seed,
        on_epoch=lambda record, trained, optimizer: keep((record.epoch + 1) * per_epoch, trained, optimizer),
        on_fresh_start=lambda untrained: keep(0, untrained, None),
        checkpoint_steps=set(params.train.rewind_iterations),
        on_checkpoint=keep,
        **batch_options(params),
    )
    return DenseRun(model.state_dict(), final_momentum, masks, history, [f for pair in files.values() for f in pair])


if __name__ == "__main__":
    run_stage(train_dense, "Train the dense network for every seed and keep every epoch's weights.")
