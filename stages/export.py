"""Stage `export@<strategy>-round<k>`: ship one round's pruned networks, one per seed.

Each seed gets a compact file of its surviving weights, under filter pruning a physically slimmed
network, and ONNX of the slimmed network (filter pruning) or of the masked one; `sizes.json`
sets their bytes and parameters beside the round's dense-format model file. Sizes only: they are
the same on every machine, where measured speeds are not (those are `python -m bench.export`'s).
Every seed is exported in memory before any file is written: a bad input writes nothing.
"""

import argparse
import logging
from pathlib import Path

from torch import nn

from rewind.checkpoint import atomic_write_bytes, save_tensors
from rewind.export import compact, onnx_bytes, slim, slim_contents
from rewind.models import build_model
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.entry import labelled, log, run_stage, strategy_round_arguments
from stages.shared.files import checked_weights, load_masks, write_json
from stages.shared.params import Params

# torch's ONNX exporter warns once per torchvision operator it skips when torchvision is absent:
# a line per operator in every export, nothing to act on (torchvision is no dependency; no model here uses its
# operators). The logger is torch's internal one: tests/stages/test_export.py fails if the lines
# come back under another name.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

Contents = bytes | tuple[dict, dict[str, str]]  # a file's bytes, or the tensors and metadata of one


def export_round(params: Params, args: argparse.Namespace) -> None:
    params.compared_strategy(args.strategy)
    params.round(args.round)
    device_for(params)  # the CPU threads every stage uses; exports are made on the CPU
    point, out = layout.round_dir(args.strategy, args.round), layout.export_dir(args.strategy, args.round)
    staged, sizes = {}, {}
    for seed in params.seeds:
        with labelled(f"{args.strategy} round {args.round} seed {seed}"):
            staged[seed], sizes[f"seed-{seed}"] = export_seed(params, point, seed)
        log.info("%s round %d seed %d: exported %s", args.strategy, args.round, seed, ", ".join(staged[seed]))
    for seed, files in staged.items():
        for kind, contents in files.items():
            path = layout.export_file(out, seed, kind)
            if isinstance(contents, bytes):
                atomic_write_bytes(path, contents)
            else:
                save_tensors(path, *contents)
            sizes[f"seed-{seed}"][kind.removesuffix(".safetensors") + "_bytes"] = path.stat().st_size
    write_json(layout.export_sizes(out), sizes)


def export_seed(params: Params, point: Path, seed: int) -> tuple[dict[str, Contents], dict[str, int]]:
    """One seed's exports by kind, and its parameter counts and dense-format model file's bytes."""
    input_shape, num_classes = params.shapes()
    model = build_model(params.model.name, input_shape, num_classes, seed=0).eval()
    model_file = layout.model(point, seed)
    model.load_state_dict(checked_weights(model, model_file))
    masks = load_masks(layout.mask(point, seed), model, params.prune.exclude)
    files: dict[str, Contents] = {"compact.safetensors": compact(model.state_dict(), masks)}
    pruned = sum(m.numel() - int(m.sum()) for m in masks.values())
    counts = {
        "params": _count(model),
        "nonzero_params": _count(model) - pruned,
        "model_bytes": model_file.stat().st_size,
    }
    shipped = model
    if params.prune.granularity == "filter":
        shipped, kept = slim(model, masks, input_shape)
        files["slim.safetensors"] = slim_contents(shipped, kept, params.model.name, input_shape, num_classes)
        counts["slim_params"] = _count(shipped)
    files["onnx"] = onnx_bytes(shipped, input_shape)
    return files, counts


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    run_stage(
        export_round, "Export one round's pruned networks for one strategy, for every seed.", strategy_round_arguments
    )
