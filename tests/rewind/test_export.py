import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from rewind import RewindError
from rewind.checkpoint import save_tensors
from rewind.export import load_compact, load_slim, onnx_bytes, save_compact, save_slim, slim
from rewind.models import build_model
from rewind.prune import apply_masks, full_masks, prune, scores
from rewind.slim import dead_filters, slimmed

SHAPES = {"mlp": (1, 8, 8), "lenet5": (1, 8, 8), "resnet20": (3, 32, 32), "vgg16": (3, 32, 32)}


def trained_like(name: str) -> nn.Module:
    """A registry model whose batch norms hold statistics and shifts as after training (a fresh
    one's are 0 and 1, which would hide the constants a dead channel emits)."""
    model = build_model(name, SHAPES[name], 10, seed=0)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                tensor.data = torch.randn(tensor.shape, generator=generator) * 0.5
            module.running_var.data = torch.rand(module.running_var.shape, generator=generator) + 0.5
    return model.eval()


def pruned(name: str, granularity: str, fraction: float) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model = trained_like(name)
    masks = full_masks(model)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    masks = prune(scores(weights, masks, "magnitude", 0, granularity), masks, fraction, "layer", granularity)
    apply_masks(model, masks)
    return model, masks


def inputs(name: str) -> torch.Tensor:
    return torch.randn(4, *SHAPES[name], generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet20"])
def test_compact_rebuilds_the_masked_model_bit_for_bit(tmp_path, name):
    model, masks = pruned(name, "weight", 0.9)
    save_compact(tmp_path / "m.safetensors", model.state_dict(), masks)
    state, loaded_masks = load_compact(tmp_path / "m.safetensors")
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(loaded_masks[k], m) for k, m in masks.items())
    rebuilt = build_model(name, SHAPES[name], 10, seed=5).eval()
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs(name)), model(inputs(name)))


def test_compact_is_a_bit_per_weight_plus_the_survivors(tmp_path):
    model, masks = pruned("mlp", "weight", 0.9)
    dense, small = tmp_path / "dense.safetensors", tmp_path / "compact.safetensors"
    save_tensors(dense, model.state_dict())
    save_compact(small, model.state_dict(), masks)
    weights = sum(m.numel() for m in masks.values())
    survivors = sum(int(m.sum()) for m in masks.values())
    others = sum(p.numel() for n, p in model.state_dict().items() if n not in masks)
    payload = 4 * survivors + sum((m.numel() + 7) // 8 for m in masks.values()) + 4 * others
    assert payload < small.stat().st_size < payload + 2048
    assert small.stat().st_size < dense.stat().st_size / 5 and weights > 20_000


def expected_slim_params(model: nn.Module, masks: dict[str, torch.Tensor], removable: dict[str, tuple]) -> int:
    """Parameters once every dead filter of each producer goes, with its entries in the batch
    norm after it and its input channel in the layer it feeds: `removable` maps producer →
    (batch norm, consumer)."""
    gone = {producer: len(dead_filters(masks, f"{producer}.weight")) for producer in removable}
    in_gone = {consumer: gone[producer] for producer, (_, consumer) in removable.items()}
    bn_gone = {bn: gone[producer] for producer, (bn, _) in removable.items()}
    total = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            out = module.weight.shape[0] - gone.get(name, 0)
            total += out * (module.weight.shape[1] - in_gone.get(name, 0)) * module.weight[0, 0].numel()
            total += out if module.bias is not None else 0
        elif isinstance(module, nn.BatchNorm2d):
            total += 2 * (module.num_features - bn_gone.get(name, 0))
    return total


def zero_shifted(model: nn.Module, bns: list[str]) -> None:
    """Give these batch norms a zero mean and a negative shift: a dead filter (output 0) then emits
    relu(shift) = 0, and a convolution may lose its channel."""
    for bn in bns:
        model.get_submodule(bn).running_mean.data.zero_()
        model.get_submodule(bn).bias.data = -model.get_submodule(bn).bias.data.abs() - 0.1


def check_slim(tmp_path, name: str, model: nn.Module, masks: dict, expected_params: int) -> None:
    slimmed_model, kept = slim(model, masks, SHAPES[name])
    assert sum(p.numel() for p in slimmed_model.parameters()) == expected_params
    assert slimmed(model, masks, SHAPES[name]).params == expected_params, "the count is what slimming removes"
    x = inputs(name)
    with torch.no_grad():
        torch.testing.assert_close(slimmed_model(x), model(x), rtol=0, atol=1e-5)
    save_slim(tmp_path / "s.safetensors", slimmed_model, kept, name, SHAPES[name], 10)
    loaded, loaded_kept = load_slim(tmp_path / "s.safetensors")
    assert loaded_kept == json.loads(json.dumps(kept))
    with torch.no_grad():
        assert torch.equal(loaded(x), slimmed_model(x))


def test_slim_resnet20_loses_the_first_convolution_of_every_block(tmp_path):
    model, masks = pruned("resnet20", "filter", 0.5)
    blocks = [f"blocks.{i}" for i in range(9)]
    zero_shifted(model, [f"{b}.bn1" for b in blocks])
    removable = {f"{b}.conv1": (f"{b}.bn1", f"{b}.conv2") for b in blocks}
    check_slim(tmp_path, "resnet20", model, masks, expected_slim_params(model, masks, removable))


def test_slim_vgg16_loses_every_dead_filter_and_folds_the_last_into_the_classifier(tmp_path):
    model, masks = pruned("vgg16", "filter", 0.5)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    zero_shifted(model, bns[:-1])  # the last feeds the linear layer, which folds any constant
    classifier = next(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
    consumers = [*convs[1:], classifier]
    removable = {conv: (bn, consumer) for conv, bn, consumer in zip(convs, bns, consumers, strict=True)}
    check_slim(tmp_path, "vgg16", model, masks, expected_slim_params(model, masks, removable))


def test_slim_keeps_a_dead_channel_whose_constant_a_convolution_would_see(tmp_path):
    """Random batch-norm shifts: some dead channels emit relu(shift) > 0 into a zero-padded
    convolution, which no bias can absorb; they stay, and the outputs still match."""
    model, masks = pruned("resnet20", "filter", 0.5)
    slimmed_model, kept = slim(model, masks, SHAPES["resnet20"])
    dead = dead_filters(masks, "blocks.0.conv1.weight")
    shift = model.get_submodule("blocks.0.bn1")
    constant = torch.relu(shift.bias - shift.weight * shift.running_mean / torch.sqrt(shift.running_var + shift.eps))
    stays = {c for c in dead if constant[c] > 0}
    assert stays and set(kept["blocks.0.conv1"]["outputs"]) == set(range(16)) - (dead - stays)
    with torch.no_grad():
        torch.testing.assert_close(slimmed_model(inputs("resnet20")), model(inputs("resnet20")), rtol=0, atol=1e-5)


def test_slim_mlp_folds_dead_neurons_into_the_next_bias(tmp_path):
    model, masks = pruned("mlp", "filter", 0.5)
    with torch.no_grad():
        model.get_submodule("1").bias.uniform_(-1, 1)  # dead neurons emit relu(bias), often > 0
    check_slim(tmp_path, "mlp", model, masks, (150 * 64 + 150) + (50 * 150 + 50) + (10 * 50 + 10))


def test_onnx_holds_the_slimmed_model():
    import onnx
    from onnx.reference import ReferenceEvaluator

    model, masks = pruned("mlp", "filter", 0.5)
    slimmed_model, _ = slim(model, masks, SHAPES["mlp"])
    proto = onnx.load_from_string(onnx_bytes(slimmed_model, SHAPES["mlp"]))
    x = inputs("mlp")
    (out,) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(x), rtol=0, atol=1e-5)
    assert onnx_bytes(slimmed_model, SHAPES["mlp"]) == onnx_bytes(slimmed_model, SHAPES["mlp"]), "deterministic"


def test_onnx_bytes_do_not_depend_on_where_torch_is_installed():
    """The exporter's stack traces name torch's files (`/somewhere/.venv/...`): a clone elsewhere
    would write other bytes, and dvc.lock would change. They are stripped."""
    model, _ = pruned("lenet5", "weight", 0.5)
    exported = onnx_bytes(model, SHAPES["lenet5"])
    assert Path(torch.__file__).parent.as_posix().encode() not in exported
    assert b"stack_trace" not in exported and sys.prefix.encode() not in exported


def test_a_file_of_another_kind_is_refused_naming_it(tmp_path):
    model, _ = pruned("mlp", "weight", 0.5)
    save_tensors(tmp_path / "plain.safetensors", model.state_dict())
    with pytest.raises(RewindError, match="plain.safetensors: not a compact export"):
        load_compact(tmp_path / "plain.safetensors")
    with pytest.raises(RewindError, match="plain.safetensors: not a slim export"):
        load_slim(tmp_path / "plain.safetensors")
