"""Stage `prune@<strategy>-round<k>`: the mask of one pruning round, from the point it starts from."""

import argparse
from fnmatch import fnmatch

from rewind.checkpoint import load_tensors, save_tensors
from rewind.prune import density, fraction_for_density, prune, scores
from stages import layout
from stages.common import load_masks, log, run_stage, strategy_round_arguments
from stages.params import Params


def prune_round(params: Params, args: argparse.Namespace) -> None:
    params.strategy(args.strategy)
    spec = params.round(args.round)
    start = layout.point(args.strategy, spec.prev)
    weights, _ = load_tensors(start / layout.MODEL)
    masks = {
        name: mask
        for name, mask in load_masks(start / layout.MASK).items()
        if not any(fnmatch(name, pattern) for pattern in params.prune.exclude)
    }
    p = params.prune
    # Iterative: a fraction of what survives; one-shot: whatever reaches this round's target.
    target = 1.0 - p.sparsities[args.round] if p.schedule == "oneshot" else None
    fraction = p.fraction if target is None else fraction_for_density(masks, target)
    scored = scores(weights, masks, p.method, seed=params.seed * 1000 + args.round)
    new_masks = prune(scored, masks, fraction, p.scope)
    save_tensors(layout.round_dir(args.strategy, args.round) / layout.MASK, new_masks)
    log.info(
        "%s round %d: density %.4f -> %.4f (%s %s pruning)",
        args.strategy,
        args.round,
        density(masks),
        density(new_masks),
        p.scope,
        p.method,
    )


if __name__ == "__main__":
    run_stage(prune_round, "Prune one round for one strategy.", strategy_round_arguments)
