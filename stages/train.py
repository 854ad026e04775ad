"""Stage `train`: the dense network for every seed, with its weights saved after every epoch
(the rewind points), its per-epoch curves logged with dvclive."""

import argparse
import time

from torch import nn

from rewind.checkpoint import save_tensors
from rewind.data import Dataset, random_crop_flip
from rewind.prune import full_masks
from rewind.train import SGD, EpochRecord
from stages import layout
from stages.common import (
    device_for,
    load_dataset,
    log,
    new_model,
    place_for_training,
    run_stage,
    write_json,
    write_timing,
)
from stages.params import Params
from stages.resumable import fingerprint, finish, move_checkpoints, scratch_dir, train_resumably

STAGE = "train"


def sgd(params: Params) -> SGD:
    t = params.train
    return SGD(t.batch_size, t.momentum, t.weight_decay, t.nesterov)


def batch_options(params: Params) -> dict:
    """What the loop does to every batch, for dense training and retraining alike: the
    augmentation (CIFAR's crop and flip, when `train.augment`) and the forward precision."""
    return {"augment": random_crop_flip if params.train.augment else None, "precision": params.train.precision}


def train_dense(params: Params, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    device = device_for(params)
    data = load_dataset(device)
    compute = 0.0
    for seed in params.seeds:
        compute_started = time.perf_counter()
        train_seed(params, data, seed)
        compute += time.perf_counter() - compute_started
    write_timing(STAGE, compute, started)
    finish(STAGE)


def train_seed(params: Params, data: Dataset, seed: int) -> None:
    """Rewind points are written to the scratch folder as training goes (so a killed run resumes
    with them) and moved into the declared output folder once all epochs are done."""
    device = data.x_train.device
    model = place_for_training(new_model(params, data, seed), params, device)
    masks = full_masks(model)
    key = f"{STAGE}/seed-{seed}"
    pending = scratch_dir(key) / "checkpoints"

    def keep(epoch: int, trained: nn.Module) -> None:
        save_tensors(pending / layout.checkpoint(seed, epoch).name, trained.state_dict())

    history = train_resumably(
        key,
        fingerprint(params, [layout.DATASET], seed),
        model,
        data,
        params.train.schedule().rates(0, params.train.epochs),
        masks,
        sgd(params),
        seed,
        on_epoch=lambda record, trained: keep(record.epoch + 1, trained),
        on_fresh_start=lambda untrained: keep(0, untrained),
        **batch_options(params),
    )
    move_checkpoints(pending, layout.checkpoint(seed, 0).parent)
    save_tensors(layout.model(layout.DENSE, seed), model.state_dict())
    save_tensors(layout.mask(layout.DENSE, seed), masks)
    write_json(layout.history(layout.DENSE, seed), train_log(history))
    log_curves(seed, history)
    log.info("dense seed %d: %d epochs, final train loss %.4f", seed, len(history), history[-1].train_loss)


def train_log(history: list[EpochRecord]) -> dict:
    """Per-epoch rate, loss and accuracy: deterministic, so identical reruns give identical files."""
    return {"epochs": [{k: v for k, v in vars(record).items() if k != "seconds"} for record in history]}


def log_curves(seed: int, history: list[EpochRecord]) -> None:
    """Dense training curves in dvclive's format, so `dvc plots` can show and diff them."""
    from dvclive import Live

    with Live(str(layout.LIVE / f"seed-{seed}"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for record in history:
            live.log_metric("train_loss", record.train_loss, plot=True)
            live.log_metric("train_accuracy", record.train_accuracy, plot=True)
            live.log_metric("lr", record.lr, plot=True)
            live.next_step()


if __name__ == "__main__":
    run_stage(train_dense, "Train the dense network for every seed and keep every epoch's weights.")
