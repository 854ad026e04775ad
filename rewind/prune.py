"""Pruning masks: boolean tensors keyed by parameter name.

A mask is True where a weight survives. Every pruning method is "score the surviving weights,
remove the lowest-scoring ones": magnitude pruning scores by |w|, the random control by a seeded
uniform draw, and the scope decides whether one threshold spans all layers (global) or each
layer loses the same fraction (layer). Weights already pruned are never scored, so iterative
pruning removes a fraction of what remains, exactly as `torch.nn.utils.prune` does.

The granularity decides what is scored and removed: single weights, or whole filters (output
channels; rows of a linear layer), scored by their L1 norm as in Li et al. 2017. Filter pruning
is the same selection over one score per filter; its masks are still boolean tensors shaped like
the weight, with a removed filter False throughout, so training, rewinding and accounting do not
change.
"""

from collections.abc import Iterable
from fnmatch import fnmatch
from typing import Literal

import torch
from torch import nn

from rewind import RewindError
from rewind.models import prunable_names

Masks = dict[str, torch.Tensor]
Method = Literal["magnitude", "random"]
Scope = Literal["global", "layer"]
Granularity = Literal["weight", "filter"]


def excluded(name: str, exclude: Iterable[str]) -> bool:
    """Whether the parameter `name` matches one of the `exclude` globs (never pruned)."""
    return any(fnmatch(name, pattern) for pattern in exclude)


def full_masks(model: nn.Module, exclude: Iterable[str] = ()) -> Masks:
    """All-True masks for every prunable weight whose name matches none of the `exclude` globs."""
    patterns = list(exclude)
    return {
        name: torch.ones_like(model.get_parameter(name), dtype=torch.bool)
        for name in prunable_names(model)
        if not excluded(name, patterns)
    }


def scores(
    weights: dict[str, torch.Tensor], masks: Masks, method: Method, seed: int, granularity: Granularity = "weight"
) -> dict[str, torch.Tensor]:
    """How much each prunable weight, or each filter, deserves to survive (higher survives).

    Per weight: |w| or a uniform draw, shaped like the weight. Per filter: the L1 norm of its
    surviving weights or a uniform draw, one per output channel.
    """
    _check_granularity(granularity)
    if method == "magnitude":
        magnitudes = {name: weights[name].detach().abs() for name in masks}
        if granularity == "filter":
            return {name: (m * masks[name]).flatten(1).sum(1) for name, m in magnitudes.items()}
        return magnitudes
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        # drawn in sorted name order: the same scores whatever order the masks come in
        shapes = {n: masks[n].shape[:1] if granularity == "filter" else masks[n].shape for n in sorted(masks)}
        return {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}
    raise RewindError(f"unknown pruning method {method!r}; known: magnitude, random")


def prune(
    scored: dict[str, torch.Tensor], masks: Masks, fraction: float, scope: Scope, granularity: Granularity = "weight"
) -> Masks:
    """Remove `fraction` of the surviving weights or filters, those with the lowest scores.

    The count removed is round(fraction * surviving), over all layers together (global) or per
    layer (layer), the same rounding as torch.nn.utils.prune. A filter survives while any of its
    weights does; removing it sets its whole slice of the mask to False.
    """
    if not 0.0 <= fraction < 1.0:
        raise RewindError(f"prune fraction must be in [0, 1), got {fraction}")
    _check_granularity(granularity)
    if granularity == "filter":
        alive = {name: mask.flatten(1).any(1) for name, mask in masks.items()}
        kept_filters = _select(scored, alive, fraction, scope)
        return {name: mask & _broadcast(kept_filters[name], mask) for name, mask in masks.items()}
    return _select(scored, masks, fraction, scope)


def _check_granularity(granularity: Granularity) -> None:
    if granularity not in ("weight", "filter"):
        raise RewindError(f"unknown pruning granularity {granularity!r}; known: weight, filter")


def _broadcast(per_filter: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-filter flag reshaped to broadcast over the weight tensor's other dimensions."""
    return per_filter.view(-1, *([1] * (like.dim() - 1)))


def _select(scored: dict[str, torch.Tensor], masks: Masks, fraction: float, scope: Scope) -> Masks:
    if scope == "layer":
        return {name: _prune_lowest({name: scored[name]}, {name: m}, fraction)[name] for name, m in masks.items()}
    if scope == "global":
        return _prune_lowest(scored, masks, fraction)
    raise RewindError(f"unknown pruning scope {scope!r}; known: global, layer")


def _prune_lowest(scored: dict[str, torch.Tensor], masks: Masks, fraction: float) -> Masks:
    names = sorted(masks)  # positions break ties: make them independent of the dict's order
    alive = torch.cat([scored[n].reshape(-1)[masks[n].reshape(-1)].float().cpu() for n in names])
    count = round(fraction * alive.numel())
    keep_alive = torch.ones(alive.numel(), dtype=torch.bool)
    if count:
        # A stable sort, not topk: equal scores (random draws collide, magnitudes can) are broken
        # by position, the same way on every run and thread count; topk breaks them arbitrarily.
        keep_alive[torch.sort(alive, stable=True).indices[:count]] = False
    new_masks, offset = {}, 0
    for name in names:
        flat = masks[name].reshape(-1).clone()
        alive_idx = flat.nonzero().squeeze(1)
        flat[alive_idx] = keep_alive[offset : offset + alive_idx.numel()].to(flat.device)
        offset += alive_idx.numel()
        new_masks[name] = flat.reshape(masks[name].shape)
    return new_masks


def fraction_for_density(masks: Masks, target_density: float) -> float:
    """The fraction of surviving weights to remove to reach `target_density` overall."""
    current = density(masks)
    if target_density > current + 1e-12:
        raise RewindError(f"cannot prune to density {target_density:g}: already at {current:g}")
    return 1.0 - target_density / current


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Set every pruned weight to exactly +0.0, in place."""
    with torch.no_grad():
        for name, mask in masks.items():
            model.get_parameter(name).masked_fill_(~mask, 0.0)


def kept(masks: Masks) -> int:
    return int(sum(int(m.sum()) for m in masks.values()))


def total(masks: Masks) -> int:
    return int(sum(m.numel() for m in masks.values()))


def density(masks: Masks) -> float:
    """Fraction of prunable weights that survive (1.0 for an unpruned network)."""
    return kept(masks) / total(masks)


def sparsity(masks: Masks) -> float:
    return 1.0 - density(masks)
