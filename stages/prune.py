"""Stage `prune@<strategy>-round<k>`: the masks of one pruning round, one per seed, from the
point the round starts from."""

import argparse

from rewind.checkpoint import save_tensors
from rewind.prune import density
from stages.shared import layout
from stages.shared.entry import log, run_stage, strategy_round_arguments
from stages.shared.files import architecture, checked_weights, load_masks
from stages.shared.params import Params
from stages.shared.rounds import next_masks


def prune_round(params: Params, args: argparse.Namespace) -> None:
    params.compared_strategy(args.strategy)
    spec = params.round(args.round)
    start = layout.point(args.strategy, spec.prev)
    target = 1.0 - params.prune.sparsities[args.round] if params.prune.schedule == "oneshot" else None
    # The dense network's masks cover every prunable weight, a round's those prune.exclude allows.
    exclude = None if start == layout.DENSE else params.prune.exclude
    model = architecture(params)
    # Every seed's masks are made before any is written: a bad input leaves no partial output.
    masks_by_seed = {}
    for seed in params.seeds:
        weights = checked_weights(model, layout.model(start, seed))
        masks = load_masks(layout.mask(start, seed), model, exclude)
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


if __name__ == "__main__":
    run_stage(prune_round, "Prune one round for one strategy, for every seed.", strategy_round_arguments)
