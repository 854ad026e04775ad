"""Stage `retrain@<strategy>-round<k>`: retrain one round's pruned networks, one per seed, as the
strategy says."""

import argparse
import time
from pathlib import Path

from torch import nn

from rewind import RewindError
from rewind.checkpoint import load_tensors, save_tensors
from rewind.data import Dataset
from rewind.prune import Masks
from rewind.strategies import Strategy, resolve, start_state
from rewind.train import EpochRecord
from stages import layout
from stages.common import (
    check_masks,
    device_for,
    load_dataset,
    load_masks,
    log,
    new_model,
    place_for_training,
    run_stage,
    strategy_round_arguments,
    write_json,
    write_timing,
)
from stages.params import Params
from stages.resumable import fingerprint, finish, train_resumably
from stages.train import batch_options, sgd, train_log


def reinit_seed(seed: int, round_id: int) -> int:
    """A fresh initialisation per round, different from the dense run's (which used `seed`)."""
    return seed * 1000 + 1 + round_id


def retrain_round(params: Params, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    strategy = params.strategy(args.strategy)
    start = layout.point(args.strategy, params.round(args.round).prev)
    out = layout.round_dir(args.strategy, args.round)
    stage = f"retrain@{args.strategy}-round{args.round}"
    data = load_dataset(device_for(params))
    compute = 0.0
    for seed in params.seeds:
        compute_started = time.perf_counter()
        mask_file = layout.mask(out, seed)
        masks = load_masks(mask_file)
        model, history = retrain(
            params,
            data,
            strategy,
            layout.model(start, seed),
            masks,
            [mask_file],
            seed,
            args.round,
            f"{stage}/seed-{seed}",
        )
        compute += time.perf_counter() - compute_started
        save_tensors(layout.model(out, seed), model.state_dict())
        write_json(layout.history(out, seed), train_log(history))
        log.info(
            "%s round %d seed %d: %d epochs from %s weights",
            args.strategy,
            args.round,
            seed,
            len(history),
            strategy.weights,
        )
    write_timing(stage, compute, started)
    finish(stage)


def retrain(
    params: Params,
    data: Dataset,
    strategy: Strategy,
    final: Path,
    masks: Masks,
    mask_inputs: list[Path],
    seed: int,
    round_id: int,
    key: str,
) -> tuple[nn.Module, list[EpochRecord]]:
    """One seed's retraining: start weights and rates from the strategy, resumable if killed.

    `final` holds the weights of the point the round starts from; the dense rewind points and a
    fresh initialisation are the other possible sources. `mask_inputs` are the files the masks
    were made from, for the fingerprint that decides whether saved progress may be resumed.
    """
    plan = resolve(strategy, params.train.schedule(), params.train.epochs)
    state = start_state(
        plan,
        final=lambda: load_tensors(final)[0],
        rewind_point=lambda epoch: load_tensors(layout.checkpoint(seed, epoch))[0],
        fresh=lambda: new_model(params, data, reinit_seed(seed, round_id)).state_dict(),
    )
    model = new_model(params, data, seed)
    model.load_state_dict(state)
    device = data.x_train.device
    place_for_training(model, params, device)
    check_masks(masks, model)
    masks = {name: m.to(device) for name, m in masks.items()}
    inputs = [layout.DATASET, *mask_inputs, final]
    if plan.rewind_epoch is not None:
        inputs.append(layout.checkpoint(seed, plan.rewind_epoch))
    try:
        history = train_resumably(
            key,
            fingerprint(params, inputs, seed),
            model,
            data,
            plan.rates,
            masks,
            sgd(params),
            seed,
            plan.labels,
            **batch_options(params),
        )
    except RewindError as err:
        raise RewindError(f"{strategy.name} round {round_id} seed {seed}: {err}") from None
    return model, history


if __name__ == "__main__":
    run_stage(retrain_round, "Retrain one pruned round with one strategy, for every seed.", strategy_round_arguments)
