"""What a pruning round does, shared by the `prune`, `retrain` and `sweep` stages: the next masks
from params, and one seed's retraining as a strategy says."""

from pathlib import Path

from torch import nn

from rewind import RewindError
from rewind.data import Dataset
from rewind.prune import Masks, excluded, fraction_for_density, prune, scores
from rewind.strategies import State, Strategy, resolve, start_momentum, start_state
from rewind.train import EpochRecord, steps_per_epoch
from stages.shared import layout
from stages.shared.files import checked_momentum, checked_weights, new_model, place_for_training
from stages.shared.layout import rewind_point
from stages.shared.params import Params
from stages.shared.progress import Watch
from stages.shared.resumable import fingerprint_of, train_resumably
from stages.shared.training import batch_options, sgd


def next_masks(
    params: Params, strategy: str, weights: dict, masks: Masks, target_density: float | None, seed: int
) -> Masks:
    """Prune the surviving, non-excluded weights: by prune.fraction (iterative) or down to
    `target_density` (one-shot), with the strategy's pruning method."""
    p = params.prune
    masks = {name: m for name, m in masks.items() if not excluded(name, p.exclude)}
    fraction = p.fraction if target_density is None else fraction_for_density(masks, target_density)
    scored = scores(weights, masks, params.pruning_method(strategy), seed, p.granularity)
    return prune(scored, masks, fraction, p.scope, p.granularity)


def kept(path: Path, step: int) -> Path:
    """A rewind point's file; one the dense run did not keep is an error saying how to keep it."""
    if not path.exists() and path.name.startswith(("step-", "momentum-step-")):
        raise RewindError(f"{path}: the dense run kept no weights at step {step}; list it in train.rewind_iterations")
    return path


def reinit_seed(seed: int, round_id: int) -> int:
    """A fresh initialisation per round, different from the dense run's (which used `seed`)."""
    return seed * 1000 + 1 + round_id


def retrain(
    params: Params,
    data: Dataset,
    strategy: Strategy,
    start: Path,
    masks: Masks,
    mask_inputs: list[Path],
    seed: int,
    round_id: int,
    scratch: str,
    watch: Watch,
) -> tuple[nn.Module, list[EpochRecord], State]:
    """One seed's retraining: start weights, momentum and rates from the strategy, resumable if
    killed, shown by `watch` as it trains. Returns the retrained model, its epochs and its
    momentum at the end.

    `start` is the point the round starts from (its model is the "final" weights); the dense
    rewind points and a fresh initialisation are the other possible sources. `masks` are checked
    already (see `files.load_masks`); `mask_inputs` are the files they were made from, for the
    fingerprint that decides whether saved progress may be resumed.
    """
    per_epoch = steps_per_epoch(len(data.y_train), params.train.batch_size)
    plan = resolve(strategy, params.train.lr_schedule(per_epoch))
    model = new_model(params, data, seed)
    final = layout.model(start, seed)
    inputs = [layout.DATASET, *mask_inputs, final]

    def used(path: Path) -> Path:
        inputs.append(path)  # a file the result depends on, for the fingerprint
        return path

    state = start_state(
        plan,
        final=lambda: checked_weights(model, final),
        rewind_point=lambda step: checked_weights(model, used(kept(rewind_point(seed, step, per_epoch)[0], step))),
        fresh=lambda: new_model(params, data, reinit_seed(seed, round_id)).state_dict(),
    )
    momentum = start_momentum(
        plan,
        final=lambda: checked_momentum(model, used(layout.momentum(start, seed))),
        rewind_point=lambda step: checked_momentum(model, used(kept(rewind_point(seed, step, per_epoch)[1], step))),
    )
    model.load_state_dict(state)
    device = data.x_train.device
    place_for_training(model, params, device)
    masks = {name: m.to(device) for name, m in masks.items()}
    history, final_momentum = train_resumably(
        scratch,
        fingerprint_of(params, inputs, seed),
        watch,
        model,
        data,
        plan.rates,
        masks,
        sgd(params),
        seed,
        plan.start_step,
        momentum=momentum,
        **batch_options(params),
    )
    return model, history, final_momentum
