"""Stage `retrain@<strategy>-round<k>`: retrain one round's pruned network as its strategy says."""

import argparse
import time

from rewind import RewindError
from rewind.checkpoint import load_tensors, save_tensors
from rewind.strategies import resolve, start_state
from stages import layout
from stages.common import (
    device_for,
    load_dataset,
    load_masks,
    log,
    new_model,
    run_stage,
    strategy_round_arguments,
    write_json,
    write_timing,
)
from stages.params import Params
from stages.resumable import fingerprint, finish, train_resumably
from stages.train import sgd, train_log


def reinit_seed(seed: int, round_id: int) -> int:
    """A fresh initialisation per round, different from the dense run's (which used `seed`)."""
    return seed + 1 + round_id


def retrain_round(params: Params, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    strategy = params.strategy(args.strategy)
    spec = params.round(args.round)
    plan = resolve(strategy, params.train.schedule(), params.train.epochs)
    device = device_for(params)
    data = load_dataset(device)
    out = layout.round_dir(args.strategy, args.round)
    state = start_state(
        plan,
        final=lambda: load_tensors(layout.point(args.strategy, spec.prev) / layout.MODEL)[0],
        rewind_point=lambda epoch: load_tensors(layout.checkpoint(epoch))[0],
        fresh=lambda: new_model(params, data, reinit_seed(params.seed, args.round)).state_dict(),
    )
    model = new_model(params, data, params.seed)
    model.load_state_dict(state)
    model.to(device)
    masks = {name: m.to(device) for name, m in load_masks(out / layout.MASK, model).items()}
    stage = f"retrain@{args.strategy}-round{args.round}"
    inputs = [layout.DATASET, out / layout.MASK, layout.point(args.strategy, spec.prev) / layout.MODEL]
    if plan.rewind_epoch is not None:
        inputs.append(layout.checkpoint(plan.rewind_epoch))
    compute_started = time.perf_counter()
    try:
        history = train_resumably(
            stage, fingerprint(params, inputs), model, data, plan.rates, masks, sgd(params), params.seed, plan.labels
        )
    except RewindError as err:
        raise RewindError(f"{args.strategy} round {args.round}: {err}") from None
    compute = time.perf_counter() - compute_started
    save_tensors(out / layout.MODEL, model.state_dict())
    write_json(out / layout.TRAIN_LOG, train_log(history))
    write_timing(stage, compute, started)
    finish(stage)
    log.info(
        "%s round %d: %d epochs from %s weights in %.1fs",
        args.strategy,
        args.round,
        len(plan.rates),
        plan.weights,
        compute,
    )


if __name__ == "__main__":
    run_stage(retrain_round, "Retrain one pruned round with one strategy.", strategy_round_arguments)
