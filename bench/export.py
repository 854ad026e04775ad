"""Measured, not counted: what shipping a pruned network buys on a CPU. `python -m bench.export`

In one run, with torch.utils.benchmark and the same threads for every variant: inference latency
(batch 1) and throughput (a large batch) of the dense network, the masked one (zeros in dense
tensors), the physically slimmed one (filter pruning: ResNet-20 and VGG-16 on CIFAR shapes), and
LeNet-300-100 at high unstructured sparsity with its linear layers as torch.sparse CSR matmuls;
file sizes of the dense-format checkpoint, the compact export and the slim export. Every speed is a
ratio against the dense network measured in the same run, so a busy or different machine moves it
less than a raw time. Results go to stdout and bench/export.json (machine-dependent, so never a
pipeline output).
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

from rewind.checkpoint import save_tensors
from rewind.export import save_compact, save_slim, slim
from rewind.models import build_model
from rewind.prune import Masks, apply_masks, full_masks, prune, scores

RESULTS = Path(__file__).with_name("export.json")
CIFAR, MNIST = (3, 32, 32), (1, 28, 28)
REPEATS = 5  # interleaved rounds per measurement


class CsrLinear(nn.Module):
    """A linear layer whose weight is a torch.sparse CSR matrix: y = (W x^T)^T + b."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight.detach().to_sparse_csr()
        self.bias = linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weight @ x.t()).t() + self.bias


def pruned(name: str, shape: tuple[int, ...], granularity: str, fraction: float) -> tuple[nn.Module, Masks]:
    """A registry model with `fraction` of its weights (or filters, per layer) pruned by magnitude."""
    model = build_model(name, shape, 10, seed=0).eval()
    masks = full_masks(model)
    weights = {n: p.detach() for n, p in model.named_parameters()}
    scope = "layer" if granularity == "filter" else "global"
    masks = prune(scores(weights, masks, "magnitude", 0, granularity), masks, fraction, scope, granularity)
    apply_masks(model, masks)
    return model, masks


def csr(model: nn.Module) -> nn.Module:
    """The MLP with every linear layer as a CSR matmul."""
    return nn.Sequential(*(CsrLinear(m) if isinstance(m, nn.Linear) else m for m in model))


def seconds(model: nn.Module, x: torch.Tensor, min_run_time: float) -> float:
    """Median seconds of one forward pass."""
    with torch.no_grad():
        timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x})
        return timer.blocked_autorange(min_run_time=min_run_time).median


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def file_sizes(model: nn.Module, masks: Masks, shape: tuple[int, ...], name: str, slimmed: tuple | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        paths = {kind: Path(folder) / f"{kind}.safetensors" for kind in ("dense", "compact", "slim")}
        save_tensors(paths["dense"], model.state_dict())
        save_compact(paths["compact"], model.state_dict(), masks)
        if slimmed:
            save_slim(paths["slim"], *slimmed, name, shape, 10)
        return {kind: path.stat().st_size for kind, path in paths.items() if path.exists()}


def case(name: str, shape: tuple[int, ...], granularity: str, fraction: float, large: int, min_run_time: float) -> dict:
    """One network: its variants' speed ratios against dense, and its file sizes."""
    dense = build_model(name, shape, 10, seed=0).eval()
    model, masks = pruned(name, shape, granularity, fraction)
    variants: dict[str, nn.Module] = {"dense": dense, "masked": model}
    slimmed = slim(model, masks, shape) if granularity == "filter" else None
    if slimmed:
        variants["slimmed"] = slimmed[0]
    else:
        variants["csr"] = csr(model)
    result = {"granularity": granularity, "fraction pruned": fraction, "large batch": large}
    for batch, label in ((1, "latency"), (large, "throughput")):
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
        # Variants interleaved, round after round: a load that comes and goes hits them alike,
        # and each round's ratio compares measurements taken moments apart.
        rounds = [{v: seconds(net, x, min_run_time / REPEATS) for v, net in variants.items()} for _ in range(REPEATS)]
        result[f"dense {label} ms"] = round(1000 * statistics.median(r["dense"] for r in rounds), 4)
        result[f"{label} speed-up"] = {v: spread([r["dense"] / r[v] for r in rounds]) for v in variants if v != "dense"}
    result["params"] = {v: sum(p.numel() for p in net.parameters()) for v, net in variants.items() if v != "csr"}
    result["bytes"] = file_sizes(model, masks, shape, name, slimmed)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every variant (default 1)")
    parser.add_argument(
        "--min-run-time", type=float, default=1.0, help="seconds per variant and batch, over all rounds (default 1)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {
        "threads": args.threads,
        "mlp 98% weights": case("mlp", MNIST, "weight", 0.98, 256, args.min_run_time),
        "mlp 90% weights": case("mlp", MNIST, "weight", 0.9, 256, args.min_run_time),
        "resnet20 50% filters": case("resnet20", CIFAR, "filter", 0.5, 32, args.min_run_time),
        "vgg16 50% filters": case("vgg16", CIFAR, "filter", 0.5, 16, args.min_run_time),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
