"""Stage `train`: the dense network, with its weights saved after every epoch (the rewind points)."""

import argparse
import time

from torch import nn

from rewind.checkpoint import save_tensors
from rewind.prune import full_masks
from rewind.train import SGD, EpochRecord
from stages import layout
from stages.common import device_for, load_dataset, log, new_model, run_stage, write_json, write_timing
from stages.params import Params
from stages.resumable import fingerprint, finish, move_checkpoints, scratch_dir, train_resumably

STAGE = "train"


def sgd(params: Params) -> SGD:
    t = params.train
    return SGD(t.batch_size, t.momentum, t.weight_decay, t.nesterov)


def train_dense(params: Params, args: argparse.Namespace) -> None:
    """Rewind points are written to the scratch folder as training goes (so a killed run resumes
    with them) and moved into the declared output folder once all epochs are done."""
    started = time.perf_counter()
    device = device_for(params)
    data = load_dataset(device)
    model = new_model(params, data, params.seed).to(device)
    masks = full_masks(model)
    epochs = params.train.epochs
    pending = scratch_dir(STAGE) / "checkpoints"

    def keep(epoch: int, trained: nn.Module) -> None:
        save_tensors(pending / layout.checkpoint(epoch).name, trained.state_dict())

    compute_started = time.perf_counter()
    history = train_resumably(
        STAGE,
        fingerprint(params, [layout.DATASET]),
        model,
        data,
        params.train.schedule().rates(0, epochs),
        masks,
        sgd(params),
        params.seed,
        on_epoch=lambda record, trained: keep(record.epoch + 1, trained),
        on_fresh_start=lambda untrained: keep(0, untrained),
    )
    compute = time.perf_counter() - compute_started
    move_checkpoints(pending, layout.CHECKPOINTS)
    save_tensors(layout.DENSE / layout.MODEL, model.state_dict())
    save_tensors(layout.DENSE / layout.MASK, masks)
    write_json(layout.DENSE / layout.TRAIN_LOG, train_log(history))
    write_timing(STAGE, compute, started)
    finish(STAGE)
    log.info("dense: %d epochs in %.1fs", epochs, compute)


def train_log(history: list[EpochRecord]) -> dict:
    """Per-epoch rate, loss and accuracy: deterministic, so identical reruns give identical files."""
    return {"epochs": [{k: v for k, v in vars(record).items() if k != "seconds"} for record in history]}


if __name__ == "__main__":
    run_stage(train_dense, "Train the dense network and keep every epoch's weights.")
