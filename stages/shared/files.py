"""Loading a stage's inputs and writing its outputs, with errors that name the file."""

import json
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from rewind import RewindError, models
from rewind.checkpoint import atomic_write_bytes, load_tensors, read_metadata
from rewind.data import Dataset
from rewind.models import build_model, prunable_names
from rewind.prune import Masks, excluded
from rewind.train import steps_per_epoch
from stages.shared import layout
from stages.shared.params import Params


def load_dataset(device: torch.device) -> Dataset:
    tensors, meta = load_tensors(layout.DATASET)
    try:
        num_classes = int(meta["num_classes"])
    except (KeyError, ValueError):
        raise RewindError(f"{layout.DATASET}: metadata lacks num_classes") from None
    data = Dataset.from_tensors(tensors, num_classes, str(layout.DATASET))
    return Dataset(**{name: t.to(device) for name, t in data.tensors().items()}, num_classes=num_classes)


def dataset_steps_per_epoch(params: Params) -> int:
    """Steps per epoch of the prepared dataset, from its header (no tensors read): for stages that
    reason about schedules without training (the report)."""
    meta = read_metadata(layout.DATASET)
    try:
        return steps_per_epoch(int(meta["train_examples"]), params.train.batch_size)
    except (KeyError, ValueError):
        raise RewindError(f"{layout.DATASET}: metadata lacks train_examples; run the prepare stage again") from None


def new_model(params: Params, data: Dataset, seed: int) -> nn.Module:
    return build_model(params.model.name, data.input_shape, data.num_classes, seed)


def architecture(params: Params) -> nn.Module:
    """The model params name, for the dataset they name, on the meta device: parameter names and
    shapes to check files against, without reading the dataset or allocating weights."""
    return models.architecture(params.model.name, *params.shapes())


def place_for_training(model: nn.Module, params: Params, device: torch.device) -> nn.Module:
    """Move `model` to the training device, its conv weights channels-last if params ask for it
    (faster convolutions on tensor-core GPUs; state_dict keys and values are unchanged)."""
    layout_format = torch.channels_last if params.train.channels_last else torch.preserve_format
    return model.to(device, memory_format=layout_format)


def load_model(params: Params, data: Dataset, path: Path, device: torch.device) -> nn.Module:
    """The registry's model with the weights stored at `path`; a mismatch names the file."""
    model = new_model(params, data, seed=0)  # the architecture; the weights come from `path`
    model.load_state_dict(checked_weights(model, path))
    return model.to(device)


def checked_weights(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The weights stored at `path`, checked to fit `model`: every tensor present, none foreign,
    every shape and dtype right, or an error naming the file."""
    state, _ = load_tensors(path)
    expected = model.state_dict()
    missing, unknown = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unknown:
        raise RewindError(f"{path}: weights do not fit the model: missing {missing[:3]}, unknown {unknown[:3]}")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise RewindError(
                f"{path}: tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, "
                f"the model's {expected[name].dtype} {tuple(expected[name].shape)}"
            )
    return state


def checked_momentum(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The momentum buffers stored at `path`, checked to fit `model`'s parameters (a buffer per
    trained parameter, or none at all before the first step), or an error naming the file."""
    momentum, _ = load_tensors(path)
    parameters = dict(model.named_parameters())
    for name, buffer in momentum.items():
        if name not in parameters:
            raise RewindError(f"{path}: momentum for {name!r}, which is no parameter of the model")
        if buffer.shape != parameters[name].shape or buffer.dtype != parameters[name].dtype:
            raise RewindError(
                f"{path}: momentum {name!r} is {buffer.dtype} {tuple(buffer.shape)}, "
                f"the parameter's {parameters[name].dtype} {tuple(parameters[name].shape)}"
            )
    return momentum


def load_masks(path: Path, model: nn.Module, exclude: list[str] | None = None) -> Masks:
    """Boolean masks from `path`, checked against `model`: one per prunable weight, of its shape,
    less those matching the `exclude` globs (None for a dense network's masks: every weight)."""
    masks, _ = load_tensors(path)
    check_masks(masks, model, str(path), exclude)
    return masks


def check_masks(masks: Masks, model: nn.Module, source: str, exclude: list[str] | None = None) -> None:
    """The checks of `load_masks`, for masks made in memory too; `source` names them in errors."""
    prunable = prunable_names(model)
    expected = {name for name in prunable if not excluded(name, exclude or [])}
    for name in sorted(set(masks) - expected):
        why = "is for a weight prune.exclude keeps unpruned" if name in prunable else "names no prunable weight"
        raise RewindError(f"{source}: mask {name!r} {why} of the model")
    missing = sorted(expected - set(masks))
    if missing:
        raise RewindError(f"{source}: no mask for {missing[:3]}; every prunable weight that is not excluded needs one")
    for name, mask in masks.items():
        if mask.dtype != torch.bool:
            raise RewindError(f"{source}: mask {name!r} has dtype {mask.dtype}, expected torch.bool")
        shape = model.get_parameter(name).shape
        if mask.shape != shape:
            raise RewindError(f"{source}: mask {name!r} has shape {tuple(mask.shape)}, the weight {tuple(shape)}")


def json_bytes(payload: object, sort_keys: bool = True) -> bytes:
    """The one JSON form stages write: indented, keys sorted (or, with `sort_keys` false, in the
    payload's own fixed order), so a rerun writes the same bytes and git shows a change line by line."""
    return (json.dumps(payload, indent=2, sort_keys=sort_keys) + "\n").encode()


def write_json(path: Path, payload: object) -> None:
    atomic_write_bytes(path, json_bytes(payload))


def replace_folder(source: Path, target: Path) -> None:
    """Make the folder `target` a copy of `source`: built beside it, then swapped in by renames, so
    `target` is the old folder or the new one whole, never a mix."""
    staged, old = target.with_name(f".{target.name}.new"), target.with_name(f".{target.name}.old")
    for leftover in (staged, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(source, staged)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_timing(stage: str, compute_seconds: float, started: float) -> None:
    """Record a stage's compute seconds and its in-process seconds since `started` (perf_counter),
    outside DVC's outputs: wall-clock seconds differ on every run (the benchmark reads them)."""
    write_json(
        layout.timing(stage),
        {"compute_seconds": compute_seconds, "in_process_seconds": time.perf_counter() - started},
    )
