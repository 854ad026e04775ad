"""Shipping a pruned network: a compact file of its surviving weights, a physically slimmed
network for filter pruning, and ONNX.

A pruned model's checkpoint is dense: every pruned weight is stored as a zero, so the file is as
big as the dense one. Three ways out, all safetensors (never pickle), written atomically:

- **compact** (any pruning): each masked weight as its surviving values in row-major order plus a
  bitmask of where they sit, packed eight weights to a byte; every other tensor (biases, batch
  norm, excluded layers) as it is. A bitmask rather than CSR indices: it costs 1 bit per weight
  whatever the sparsity, where CSR costs a 32-bit column index per survivor (plus row pointers),
  so the bitmask is the smaller down to a density of 1/32 (96.9% sparsity), which covers every
  round of the default run but its last; it is also one layout for weights of any rank, and
  exact. Loading scatters the values back into zeros: the dense-equivalent state_dict, bit for bit.
- **slim** (filter pruning): the dead filters `rewind.slim.removal` finds removable are cut out
  of the tensors, with the input channels, batch-norm entries and biases of their channels; the
  constant a removed channel fed a linear layer is folded into that layer's bias. The file holds
  the shrunken state_dict and, as JSON metadata, the registry model it came from and the original
  indices of every kept channel; loading rebuilds the registry model with shrunken layers.
- **ONNX** of the slimmed or the masked model, with a dynamic batch dimension, through torch's
  own exporter (`torch.onnx.export(dynamo=True)`, which needs onnx and onnxscript).
"""

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from rewind import RewindError
from rewind.checkpoint import load_tensors, save_tensors
from rewind.models import architecture
from rewind.prune import Masks, apply_masks
from rewind.slim import Removal, removal

if TYPE_CHECKING:
    import onnx

VALUES, BITS = ":values", ":bits"
# How a module's sizes follow its weight's shape when layers shrink.
SIZES = {
    nn.Conv2d: ("out_channels", "in_channels"),
    nn.Linear: ("out_features", "in_features"),
    nn.BatchNorm1d: ("num_features",),
    nn.BatchNorm2d: ("num_features",),
}


def compact(state: dict[str, torch.Tensor], masks: Masks) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a compact file: masked weights as surviving values plus packed
    bitmask, every other tensor as it is."""
    tensors, shapes = {}, {}
    for name, tensor in state.items():
        if name not in masks:
            tensors[name] = tensor
            continue
        mask = masks[name].cpu()
        tensors[name + VALUES] = tensor.detach().cpu()[mask]
        tensors[name + BITS] = torch.from_numpy(np.packbits(mask.numpy().reshape(-1), bitorder="little"))
        shapes[name] = list(mask.shape)
    return tensors, {"export": "compact", "shapes": json.dumps(shapes, sort_keys=True)}


def expand(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> tuple[dict[str, torch.Tensor], Masks]:
    """The dense-equivalent state_dict and the masks a compact file was made from."""
    shapes = json.loads(meta["shapes"])
    state = {name: t for name, t in tensors.items() if not name.endswith((VALUES, BITS))}
    masks = {}
    for name, shape in shapes.items():
        count = int(np.prod(shape))
        bits = np.unpackbits(tensors[name + BITS].numpy(), count=count, bitorder="little")
        masks[name] = torch.from_numpy(bits.astype(bool)).reshape(shape)
        values = tensors[name + VALUES]
        state[name] = torch.zeros(shape, dtype=values.dtype).masked_scatter(masks[name], values)
    return dict(sorted(state.items())), masks


def save_compact(path: Path, state: dict[str, torch.Tensor], masks: Masks) -> None:
    save_tensors(path, *compact(state, masks))


def load_compact(path: Path) -> tuple[dict[str, torch.Tensor], Masks]:
    """A compact file's dense-equivalent state_dict and masks, or an error naming the file."""
    tensors, meta = load_tensors(path)
    if meta.get("export") != "compact":
        raise RewindError(f"{path}: not a compact export (export {meta.get('export')!r})")
    try:
        return expand(tensors, meta)
    except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as err:
        raise RewindError(f"{path}: compact export does not unpack: {' '.join(str(err).split())}") from None


def slim(model: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict[str, dict]]:
    """A copy of the masked `model` with its removable dead channels cut out, in eval mode, and
    for every module that shrank the original indices of what it kept: its `outputs` and `inputs`
    (weighted layers) or `channels` (batch norms)."""
    masked = copy.deepcopy(model).eval()
    apply_masks(masked, masks)
    removed = removal(masked, masks, input_shape)
    kept = _kept(masked, removed)
    state = _cut(masked, removed, kept)
    return shrink(masked, state), kept


def shrink(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """`model` (changed in place, any device, the meta device included) with every layer resized to
    the shapes in `state` and `state` loaded: how a slimmed network is rebuilt."""
    for name, module in model.named_modules():
        own = {f"{name}.{key}" if name else key: key for key, _ in module.named_parameters(recurse=False)}
        own |= {f"{name}.{key}" if name else key: key for key, _ in module.named_buffers(recurse=False)}
        resized = {
            full: key for full, key in own.items() if full in state and state[full].shape != getattr(module, key).shape
        }
        if not resized:
            continue
        if type(module) not in SIZES:
            raise RewindError(f"module {name!r} ({type(module).__name__}) has no rule to shrink it")
        for full, key in resized.items():
            old = getattr(module, key)
            new = torch.empty(state[full].shape, dtype=old.dtype, device=old.device)
            setattr(module, key, nn.Parameter(new, old.requires_grad) if isinstance(old, nn.Parameter) else new)
        for dim, size in enumerate(SIZES[type(module)]):
            setattr(module, size, module.weight.shape[dim])
    if any(t.is_meta for t in model.state_dict().values()):
        model = model.to_empty(device="cpu")
    model.load_state_dict(state)
    return model.eval()


def slim_contents(
    model: nn.Module, kept: dict[str, dict], name: str, input_shape: tuple[int, ...], num_classes: int
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a slim file: the slimmed state_dict and what rebuilds it (the
    registry `name`, input shape, classes) and maps it back (the kept channel indices)."""
    meta = {
        "export": "slim",
        "model": name,
        "input_shape": json.dumps(list(input_shape)),
        "num_classes": str(num_classes),
        "kept": json.dumps(kept, sort_keys=True),
    }
    return model.state_dict(), meta


def save_slim(
    path: Path, model: nn.Module, kept: dict[str, dict], name: str, input_shape: tuple[int, ...], num_classes: int
) -> None:
    save_tensors(path, *slim_contents(model, kept, name, input_shape, num_classes))


def load_slim(path: Path) -> tuple[nn.Module, dict[str, dict]]:
    """The slimmed model saved at `path` (the registry model with shrunken layers, on the CPU, in
    eval mode) and its kept channel indices, or an error naming the file."""
    tensors, meta = load_tensors(path)
    if meta.get("export") != "slim":
        raise RewindError(f"{path}: not a slim export (export {meta.get('export')!r})")
    try:
        shape, num_classes = tuple(json.loads(meta["input_shape"])), int(meta["num_classes"])
        return shrink(architecture(meta["model"], shape, num_classes), tensors), json.loads(meta["kept"])
    except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as err:
        raise RewindError(f"{path}: slim export does not rebuild: {' '.join(str(err).split())}") from None


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """The model as an ONNX file with a dynamic batch dimension, in eval mode, via torch's
    exporter; the same model gives the same bytes on any machine (see `_without_debug_info`)."""
    model = copy.deepcopy(model).eval()
    example = torch.zeros(2, *input_shape, device=next(model.parameters()).device)
    try:
        program = torch.onnx.export(
            model, (example,), dynamo=True, verbose=False, dynamic_shapes=({0: torch.export.Dim("batch")},)
        )
    except Exception as err:  # the exporter raises many kinds for what it cannot translate
        raise RewindError(f"cannot export the model to ONNX: {' '.join(str(err).split())[:300]}") from None
    return _without_debug_info(program.model_proto).SerializeToString()


def _without_debug_info(proto: "onnx.ModelProto") -> "onnx.ModelProto":
    """The model without the exporter's debugging metadata: its stack traces name the files of
    the torch installation (`/home/you/.venv/...`), so the bytes would depend on where the
    project lives. Names, shapes and weights, everything a runtime reads, stay."""
    graphs = [proto.graph, *(function for function in proto.functions)]
    proto.ClearField("metadata_props")
    for graph in graphs:
        if hasattr(graph, "metadata_props"):
            graph.ClearField("metadata_props")
        for node in graph.node:
            node.ClearField("metadata_props")
        for values in ("input", "output", "value_info"):
            for value in getattr(graph, values, []):
                value.ClearField("metadata_props")
        for initializer in getattr(graph, "initializer", []):
            initializer.ClearField("metadata_props")
    return proto


def _kept(model: nn.Module, removed: Removal) -> dict[str, dict]:
    """Original indices of what every shrinking module keeps."""
    modules = dict(model.named_modules())
    kept: dict[str, dict] = {}
    for role, by_module in (("outputs", removed.outputs), ("inputs", removed.inputs), ("channels", removed.channels)):
        for name, gone in by_module.items():
            size = modules[name].weight.shape[1 if role == "inputs" else 0]
            kept.setdefault(name, {})[role] = [i for i in range(size) if i not in gone]
    return kept


def _cut(model: nn.Module, removed: Removal, kept: dict[str, dict]) -> dict[str, torch.Tensor]:
    """The masked model's state_dict with the removed channels cut out and the constants of the
    inputs a linear layer lost folded into its bias."""
    state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if isinstance(module, nn.Linear) and removed.inputs.get(name):
            gone = sorted(removed.inputs[name])
            seen = removed.seen[name][gone, 0].to(module.weight.dtype)
            state[f"{name}.bias"] = state[f"{name}.bias"] + module.weight.detach()[:, gone] @ seen
    for name, roles in kept.items():
        for key in ("weight", "bias", "running_mean", "running_var"):
            full = f"{name}.{key}"
            if full not in state:
                continue
            tensor = state[full]
            if "outputs" in roles or "channels" in roles:
                tensor = tensor[roles.get("outputs", roles.get("channels"))]
            if "inputs" in roles and key == "weight":
                tensor = tensor[:, roles["inputs"]]
            state[full] = tensor.contiguous()
    return state
