"""Which dead filters of a filter-pruned network can be physically removed, and what is left.

Masks zero whole filters (output channels) but keep their place in every tensor. Removing a dead
filter also removes the input channels of the layers it feeds, and the batch-norm and bias
entries of its channel; where the channel flows into a residual sum (or out of the network) it
cannot be removed without changing the other operand, so it stays. This module finds, for any
model torch.fx can trace, which dead channels can go (`removal`), and counts the parameters and
multiply-accumulates of the network without them (`slimmed`, Li et al.'s accounting, ICLR 2017);
`rewind.export` removes the very same channels, so the count is what the slimmed file holds.

A dead filter still emits a constant: its bias, shifted by its batch norm and passed through the
activation. Removing it is exact only if its consumer can do without that constant:

- a linear layer (with a bias) folds the constant into its bias: the same for every input;
- a convolution cannot (zero padding makes the constant's contribution differ at the borders, which
  a plain bias cannot express), so the channel goes only where the constant is exactly 0 (say
  ReLU of a negative shift), and stays otherwise.

The constants are read from one forward pass in eval mode: they depend on the channel alone, never
on the input. A channel goes only if every consumer it reaches can lose it.
"""

from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from rewind import RewindError
from rewind.prune import Masks

# Modules and functions that act on each channel alone: a dead channel passes through them to
# whatever layer consumes it.
PER_CHANNEL_MODULES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Identity,
)
PER_CHANNEL_FUNCTIONS = (torch.relu, nn.functional.relu, nn.functional.adaptive_avg_pool2d)
FLATTEN = (torch.flatten,)
Weighted = nn.Conv2d | nn.Linear


@dataclass(frozen=True)
class Slimmed:
    """Sizes of the network with its removable dead channels gone."""

    params: int  # every parameter left, biases and norms included
    flops: int  # multiply-accumulates of conv and linear layers for one example
    removed_channels: int


def dead_filters(masks: Masks, name: str) -> set[int]:
    """Output channels of weight `name` whose mask is False throughout."""
    mask = masks[name]
    return {int(i) for i in torch.nonzero(~mask.reshape(mask.shape[0], -1).any(dim=1)).flatten()}


@dataclass
class Removal:
    """What goes: output channels of weighted layers, input features of the layers they feed,
    and channels of the per-channel modules (batch norms) in between, all by module name; and for
    each consumer losing input features, the input it saw (one example, flattened), whose removed
    features hold the constants to fold into its bias."""

    outputs: dict[str, set[int]] = field(default_factory=dict)
    inputs: dict[str, set[int]] = field(default_factory=dict)
    channels: dict[str, set[int]] = field(default_factory=dict)
    seen: dict[str, torch.Tensor] = field(default_factory=dict)

    def kept(self, name: str, module: nn.Module) -> tuple[int, int, int]:
        """A weighted layer's output channels and input channels left, and weights per pair."""
        out_left = module.weight.shape[0] - len(self.outputs.get(name, ()))
        in_left = module.weight.shape[1] - len(self.inputs.get(name, ()))
        return out_left, in_left, module.weight[0, 0].numel() if isinstance(module, nn.Conv2d) else 1


def removal(model: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> Removal:
    """The dead channels that can be removed exactly (see the module doc), and where."""
    return _analysed(model, masks, input_shape)[1]


def slimmed(model: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> Slimmed:
    """Parameters and FLOPs after removing every dead filter that can be removed (see module doc)."""
    graph, removed = _analysed(model, masks, input_shape)
    modules = dict(graph.named_modules())
    params = sum(_params_left(name, module, removed) for name, module in graph.named_modules())
    flops = 0
    for node in _weighted_nodes(graph, modules):
        out_left, in_left, per_pair = removed.kept(node.target, modules[node.target])
        positions = _positions(node) if isinstance(modules[node.target], nn.Conv2d) else 1
        flops += out_left * in_left * per_pair * positions
    return Slimmed(params, flops, sum(map(len, removed.outputs.values())))


def _analysed(model: nn.Module, masks: Masks, input_shape: tuple[int, ...]) -> tuple[fx.GraphModule, Removal]:
    graph, seen = _traced(model, input_shape)
    modules = dict(graph.named_modules())
    removed = Removal()
    for node in _weighted_nodes(graph, modules):
        name = f"{node.target}.weight"
        dead = dead_filters(masks, name) if name in masks else set()
        consumers = _consumers(node, modules) if dead else None
        if not consumers:
            continue
        features = {
            (consumer, channel): range(channel * per, (channel + 1) * per)
            for _, consumer, per in consumers
            for channel in dead
        }
        dead = {
            channel
            for channel in dead
            if all(
                _droppable(modules[consumer], seen[consumer], features[consumer, channel])
                for _, consumer, _ in consumers
            )
        }
        if not dead:
            continue
        removed.outputs[node.target] = dead
        for passed, consumer, _ in consumers:
            removed.inputs.setdefault(consumer, set()).update(
                f for channel in dead for f in features[consumer, channel]
            )
            removed.seen[consumer] = seen[consumer]
            for owner in passed:
                removed.channels.setdefault(owner, set()).update(dead)
    return graph, removed


def _droppable(consumer: nn.Module, seen: torch.Tensor, features: range) -> bool:
    """Whether `consumer` gives the same outputs without these input features of constant value:
    a linear layer with a bias folds any constant into it, anything else only loses zeros."""
    constants = seen[features.start : features.stop]
    return bool((constants == 0).all()) or (isinstance(consumer, nn.Linear) and consumer.bias is not None)


class _Recorder(ShapeProp):
    """Shape propagation that also keeps what every weighted layer was given, flattened per
    feature (a convolution's input by channel, then position): the constants of dead channels."""

    def __init__(self, graph: fx.GraphModule) -> None:
        super().__init__(graph)
        self.seen: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> object:
        if n.op == "call_module" and isinstance(self.module.get_submodule(n.target), Weighted):
            given = self.env[n.args[0]]
            self.seen[n.target] = given[0].reshape(given.shape[1], -1) if given.dim() > 2 else given[0].reshape(-1, 1)
        return super().run_node(n)


def _traced(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[fx.GraphModule, dict[str, torch.Tensor]]:
    """The model's graph with output shapes, and what each weighted layer saw, from one forward
    pass of zeros in eval mode (batch norms use their running statistics and update nothing)."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception as err:  # torch.fx raises many kinds for code it cannot trace
        reason = " ".join(str(err).split())
        raise RewindError(f"cannot trace the model to find removable filters: {reason}") from None
    recorder = _Recorder(graph)
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            recorder.propagate(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for module, training in modes.items():
            module.training = training
    return graph, recorder.seen


def _weighted_nodes(graph: fx.GraphModule, modules: dict[str, nn.Module]) -> list[fx.Node]:
    return [n for n in graph.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], Weighted)]


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """How a node treats channels: "weighted" consumes them, "flatten" spreads each over its
    positions, "per-channel" passes each on alone (a module with its own entries per channel, or a
    function without), "other" mixes them (a residual sum, a concatenation, the output)."""
    module = modules.get(node.target) if node.op == "call_module" else None
    if isinstance(module, Weighted):
        return "weighted"
    if isinstance(module, nn.Flatten) or (node.op == "call_function" and node.target in FLATTEN):
        return "flatten"
    if isinstance(module, PER_CHANNEL_MODULES):
        return "per-channel module" if module.state_dict() else "per-channel"
    if node.op == "call_function" and node.target in PER_CHANNEL_FUNCTIONS:
        return "per-channel"
    return "other"


def _consumers(node: fx.Node, modules: dict[str, nn.Module]) -> list[tuple[list[str], str, int]] | None:
    """Where the channels of `node`'s output end up: (per-channel modules passed, consuming
    layer, input features per channel there), or None if any path reaches something else."""
    found = []
    stack = [(user, [], 1) for user in node.users]
    while stack:
        user, passed, per_channel = stack.pop()
        kind = _kind(user, modules)
        if kind == "weighted":
            found.append((passed, user.target, per_channel))
            continue
        if kind == "other":
            return None  # the channel must stay
        if kind == "flatten":
            per_channel *= _positions(user.args[0])
        elif kind == "per-channel module":
            passed = [*passed, user.target]
        stack += [(next_user, passed, per_channel) for next_user in user.users]
    return found


def _positions(node: fx.Node) -> int:
    """Values per channel of a node's (batch, channels, …) output."""
    return int(torch.Size(node.meta["tensor_meta"].shape[2:]).numel())


def _params_left(name: str, module: nn.Module, removal: Removal) -> int:
    """Parameters a module keeps (its own, not its children's)."""
    own = list(module.parameters(recurse=False))
    if isinstance(module, Weighted):
        out_left, in_left, per_pair = removal.kept(name, module)
        return out_left * in_left * per_pair + (out_left if module.bias is not None else 0)
    return sum(p.numel() for p in own) - len(own) * len(removal.channels.get(name, ()))
