"""What every stage shares: the entry point with one-line errors, determinism, loading helpers."""

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from rewind import RewindError
from rewind.checkpoint import atomic_write_bytes, load_tensors
from rewind.data import Dataset
from rewind.models import build_model
from rewind.prune import Masks
from stages import layout
from stages.params import Params, load_params

log = logging.getLogger("rewind")
Body = Callable[[Params, argparse.Namespace], None]


def run_stage(body: Body, description: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Parse arguments, validate params.yaml, run `body`; a RewindError becomes one line and exit 2."""
    parser = argparse.ArgumentParser(description=description)
    if arguments is not None:
        arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        params = load_params()
        body(params, args)
    except RewindError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def strategy_round_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, help="a strategy named in params.yaml `compare`")
    parser.add_argument("--round", type=int, required=True, help="a round id from params.yaml `rounds`")


def device_for(params: Params) -> torch.device:
    """The training device, with the CPU thread count params ask for; on CUDA, deterministic
    kernels are requested as well.

    The thread count is a param, not the machine's core count, because on CPU it is part of the
    result: a float sum split over more threads is added in another order. On CPU the kernels we
    use are deterministic already, and `use_deterministic_algorithms` would import torch._dynamo,
    which costs 1.4 s of start-up in every stage.
    """
    if params.train.threads is not None:
        torch.set_num_threads(params.train.threads)
    wanted = params.train.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda":
        if not torch.cuda.is_available():
            raise RewindError("train.device: 'cuda' requested but no CUDA device is available")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.device(wanted)


def load_dataset(device: torch.device) -> Dataset:
    tensors, meta = load_tensors(layout.DATASET)
    try:
        num_classes = int(meta["num_classes"])
    except (KeyError, ValueError):
        raise RewindError(f"{layout.DATASET}: metadata lacks num_classes") from None
    data = Dataset.from_tensors(tensors, num_classes, str(layout.DATASET))
    return Dataset(*(t.to(device) for t in data.tensors().values()), num_classes=num_classes)


def new_model(params: Params, data: Dataset, seed: int) -> nn.Module:
    return build_model(params.model.name, data.input_shape, data.num_classes, seed)


def place_for_training(model: nn.Module, params: Params, device: torch.device) -> nn.Module:
    """Move `model` to the training device, its conv weights channels-last if params ask for it
    (faster convolutions on tensor-core GPUs; state_dict keys and values are unchanged)."""
    layout_format = torch.channels_last if params.train.channels_last else torch.preserve_format
    return model.to(device, memory_format=layout_format)


def load_model(params: Params, data: Dataset, path, device: torch.device) -> nn.Module:
    """The registry's model with the weights stored at `path`; a mismatch names the file."""
    model = new_model(params, data, seed=0)  # the architecture; the weights come from `path`
    state, _ = load_tensors(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise RewindError(f"{path}: weights do not fit model {params.model.name!r}: {_first_line(err)}") from None
    return model.to(device)


def load_masks(path, model: nn.Module | None = None) -> Masks:
    """Boolean masks from `path`, checked against `model`'s weights when one is given."""
    masks, _ = load_tensors(path)
    check_masks(masks, model, str(path))
    return masks


def check_masks(masks: Masks, model: nn.Module | None, source: str = "masks") -> None:
    for name, mask in masks.items():
        if mask.dtype != torch.bool:
            raise RewindError(f"{source}: mask {name!r} has dtype {mask.dtype}, expected torch.bool")
        if model is None:
            continue
        try:
            shape = model.get_parameter(name).shape
        except AttributeError:
            raise RewindError(f"{source}: mask {name!r} names no parameter of the model") from None
        if mask.shape != shape:
            raise RewindError(f"{source}: mask {name!r} has shape {tuple(mask.shape)}, the weight {tuple(shape)}")


def write_json(path, payload: object) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def write_timing(stage: str, compute_seconds: float, started: float) -> None:
    """Record a stage's compute seconds and its in-process seconds since `started` (perf_counter)."""
    write_json(
        layout.timing(stage),
        {"compute_seconds": compute_seconds, "in_process_seconds": time.perf_counter() - started},
    )


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split())[:300]
