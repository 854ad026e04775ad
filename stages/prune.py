"""Stage `prune@<strategy>-round<k>`: the masks of one pruning round, one per seed, from the
point the round starts from."""

import argparse
from fnmatch import fnmatch

from rewind.checkpoint import load_tensors, save_tensors
from rewind.prune import Masks, density, fraction_for_density, prune, scores
from stages import layout
from stages.common import load_masks, log, run_stage, strategy_round_arguments
from stages.params import Params


def prune_round(params: Params, args: argparse.Namespace) -> None:
    params.strategy(args.strategy)
    spec = params.round(args.round)
    start = layout.point(args.strategy, spec.prev)
    target = 1.0 - params.prune.sparsities[args.round] if params.prune.schedule == "oneshot" else None
    # Every seed's masks are made before any is written: a bad input leaves no partial output.
    masks_by_seed = {}
    for seed in params.seeds:
        weights, _ = load_tensors(layout.model(start, seed))
        masks = load_masks(layout.mask(start, seed))
        masks_by_seed[seed] = next_masks(params, args.strategy, weights, masks, target, seed * 1000 + args.round)
        log.info(
            "%s round %d seed %d: density %.4f -> %.4f",
            args.strategy,
            args.round,
            seed,
            density(masks),
            density(masks_by_seed[seed]),
        )
    for seed, new_masks in masks_by_seed.items():
        save_tensors(layout.mask(layout.round_dir(args.strategy, args.round), seed), new_masks)


def next_masks(
    params: Params, strategy: str, weights: dict, masks: Masks, target_density: float | None, seed: int
) -> Masks:
    """Prune the surviving, non-excluded weights: by prune.fraction (iterative) or down to
    `target_density` (one-shot), with the strategy's pruning method."""
    p = params.prune
    masks = {name: m for name, m in masks.items() if not any(fnmatch(name, pattern) for pattern in p.exclude)}
    fraction = p.fraction if target_density is None else fraction_for_density(masks, target_density)
    scored = scores(weights, masks, params.pruning_method(strategy), seed, p.granularity)
    return prune(scored, masks, fraction, p.scope, p.granularity)


if __name__ == "__main__":
    run_stage(prune_round, "Prune one round for one strategy, for every seed.", strategy_round_arguments)
