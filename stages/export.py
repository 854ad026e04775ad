"""Stage `export`: ship every compared strategy's pruned networks, every round and seed, in one process.

Each seed of each round gets a compact file of its surviving weights and, under filter pruning, a
physically slimmed network; `sizes.json` per round sets their bytes and parameters beside the
round's dense-format model file. ONNX, of the slimmed network (filter pruning) or of the masked
one, is written only for the rounds `export.onnx` names: torch's exporter costs seconds where the
rest costs milliseconds, and no stage imports it unless it exports ONNX. Sizes only: they are the
same on every machine, where measured speeds are not (those are `python -m bench.export`'s).

`--strategy S` exports one strategy, with `--round K` one round of it, on its own: the same files
the stage writes for them. Every round is exported in memory before any file is written: a bad
input writes nothing.
"""

import argparse
import logging
from pathlib import Path

from torch import nn

from rewind import RewindError
from rewind.checkpoint import atomic_write_bytes, save_tensors
from rewind.export import compact, onnx_bytes, slim, slim_contents
from rewind.models import build_model
from stages.shared import layout
from stages.shared.device import device_for
from stages.shared.entry import labelled, log, run_stage
from stages.shared.files import checked_weights, load_masks, write_json
from stages.shared.params import Params

# torch's ONNX exporter warns once per torchvision operator it skips when torchvision is absent:
# a line per operator in every export, nothing to act on (torchvision is no dependency; no model here uses its
# operators). The logger is torch's internal one: tests/stages/test_export.py fails if the lines
# come back under another name.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

Contents = bytes | tuple[dict, dict[str, str]]  # a file's bytes, or the tensors and metadata of one


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", help="one strategy named in params.yaml `compare` (default: every one)")
    parser.add_argument("--round", type=int, help="one round id from params.yaml `rounds` (default: every round)")


def export_strategies(params: Params, args: argparse.Namespace) -> None:
    if args.round is not None and args.strategy is None:
        raise RewindError("--round: name the strategy it is a round of with --strategy")
    strategies = params.compare if args.strategy is None else [args.strategy]
    rounds = [params.round(args.round)] if args.round is not None else params.rounds
    device_for(params)  # the CPU threads every stage uses; exports are made on the CPU
    staged = {}
    for strategy in strategies:
        params.compared_strategy(strategy)
        onnx = params.onnx_rounds(strategy)
        for spec in rounds:
            staged[strategy, spec.id] = export_round(params, strategy, spec.id, spec.id in onnx)
    for (strategy, round_id), (files, sizes) in staged.items():
        write_round(layout.export_dir(strategy, round_id), files, sizes)


def export_round(params: Params, strategy: str, round_id: int, with_onnx: bool) -> tuple[dict, dict]:
    """One round's exports in memory, by seed: their files by kind, and their sizes."""
    point = layout.round_dir(strategy, round_id)
    files, sizes = {}, {}
    for seed in params.seeds:
        with labelled(f"{strategy} round {round_id} seed {seed}"):
            files[seed], sizes[f"seed-{seed}"] = export_seed(params, point, seed, with_onnx)
        log.info("%s round %d seed %d: exported %s", strategy, round_id, seed, ", ".join(files[seed]))
    return files, sizes


def write_round(out: Path, files: dict[int, dict[str, Contents]], sizes: dict[str, dict]) -> None:
    """Write a round's files and its sizes; files of kinds no longer asked for (an ONNX file once
    `export.onnx` drops the round) are removed."""
    written = {layout.export_sizes(out)}
    for seed, by_kind in files.items():
        for kind, contents in by_kind.items():
            path = layout.export_file(out, seed, kind)
            if isinstance(contents, bytes):
                atomic_write_bytes(path, contents)
            else:
                save_tensors(path, *contents)
            written.add(path)
            sizes[f"seed-{seed}"][kind.removesuffix(".safetensors") + "_bytes"] = path.stat().st_size
    write_json(layout.export_sizes(out), sizes)
    for stale in set(out.iterdir()) - written:
        stale.unlink()


def export_seed(params: Params, point: Path, seed: int, with_onnx: bool) -> tuple[dict[str, Contents], dict[str, int]]:
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
    if with_onnx:
        files["onnx"] = onnx_bytes(shipped, input_shape)
    return files, counts


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":
    run_stage(export_strategies, "Export the pruned networks of every strategy, round and seed.", export_arguments)
