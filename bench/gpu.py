"""`python -m bench.gpu`: the training loop on a GPU, at paper shapes, every figure against a
baseline measured in the same run.

- our loop (`rewind.train.train`: masks kept at zero, every step's rate from the schedule, data
  order from the seed) against a minimal plain-PyTorch loop (`torch.optim.SGD`) on the same data,
  in fp32 and in the presets' bf16 autocast with channels-last weights;
- a pruned network's step (`MaskedSGD`, 90% of weights masked) against a dense `torch.optim.SGD` step;
- an epoch of CIFAR-10's size for ResNet-20 and ResNet-56, so the paper's runs can be priced;
- whether two runs of the same training on the GPU give the same bits (the stages ask CUDA for
  deterministic algorithms, as this does): promised on the CPU, measured here for the GPU;
- how much one GPU gains from several training processes at once (`--side-by-side`): small
  networks at batch 128 leave most of a large GPU idle between kernel launches, so runs (seeds,
  strategies, stages of the several-machine path) may share it.

Data are random tensors of CIFAR-10's shapes held on the GPU, as the stages hold a dataset: the
loop's speed does not depend on the pixels. `--device cpu --quick` runs the same code on the CPU,
at batch 16, for a machine without a GPU (the test suite does).
"""

import argparse
import copy
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.micro import LR, MOMENTUM, WEIGHT_DECAY, sparse_masks, step_fn
from bench.stats import interleaved, ratios, summary
from rewind.data import Dataset, batches
from rewind.models import build_model
from rewind.optim import MaskedSGD
from rewind.prune import full_masks
from rewind.train import SGD, steps_per_epoch, train

DEFAULT_OUT = Path(__file__).resolve().parent / "gpu.json"
CIFAR_SHAPE, CIFAR_TRAIN, BATCH, QUICK_BATCH = (3, 32, 32), 50_000, 128, 16


def cifar_like(samples: int, device: torch.device) -> Dataset:
    """Random tensors of CIFAR-10's shapes on `device`."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, *CIFAR_SHAPE, generator=generator).to(device)
    y = torch.randint(0, 10, (samples,), generator=generator).to(device)
    return Dataset(x, y, x[:1], y[:1], 10)


def timed(device: torch.device, action: Callable[[], object]) -> Callable[[], None]:
    """`action`, waiting for the device at its end: a GPU queues work and returns at once."""

    def run() -> None:
        action()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run


def plain_epoch(model: nn.Module, data: Dataset, batch: int, bf16: bool) -> None:
    """The minimal loop on the same batches: torch.optim.SGD, autocast when asked, nothing else."""
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    model.train()
    for x, y in batches(data.x_train, data.y_train, batch, torch.Generator().manual_seed(0)):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def loop_against_plain(name: str, data: Dataset, batch: int, bf16: bool, repetitions: int) -> dict:
    """Samples/s of our loop and of the plain one, one epoch of `data` per repetition, interleaved."""
    device = data.x_train.device
    layout = torch.channels_last if bf16 else torch.preserve_format
    ours = build_model(name, CIFAR_SHAPE, 10, seed=0).to(device, memory_format=layout)
    plain = copy.deepcopy(ours)
    masks = {n: m.to(device) for n, m in full_masks(ours).items()}
    sgd = SGD(batch, MOMENTUM, WEIGHT_DECAY)
    precision = "bf16" if bf16 else "fp32"
    actions = {
        "ours": timed(
            device,
            lambda: train(
                ours, data, [LR] * steps_per_epoch(len(data.y_train), batch), masks, sgd, seed=0, precision=precision
            ),
        ),
        "plain": timed(device, lambda: plain_epoch(plain, data, batch, bf16)),
    }
    for action in actions.values():  # warm-up: kernels chosen, allocator filled
        action()
    times = interleaved(actions, repetitions)
    samples = len(data.y_train)
    return {
        "model": name,
        "precision": precision,
        "channels_last": bf16,
        "batch_size": batch,
        "samples_per_epoch": samples,
        "ours_samples_per_second": summary([samples / t for t in times["ours"]]),
        "plain_samples_per_second": summary([samples / t for t in times["plain"]]),
        "ratio": ratios(times["plain"], times["ours"]),
        "cifar10_epoch_seconds": summary([t * CIFAR_TRAIN / samples for t in times["ours"]]),
    }


def masked_step(name: str, device: torch.device, batch: int, repetitions: int, steps: int) -> dict:
    """Seconds per step of MaskedSGD at 90% sparsity against a dense torch.optim.SGD step."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *CIFAR_SHAPE, generator=generator).to(device)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    dense_model = build_model(name, CIFAR_SHAPE, 10, seed=0).to(device)
    masked_model = copy.deepcopy(dense_model)
    plain = torch.optim.SGD(dense_model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    masks = {n: m.to(device) for n, m in sparse_masks(masked_model, 0.9).items()}
    masked = MaskedSGD(masked_model, masks, MOMENTUM, WEIGHT_DECAY, False)
    dense = step_fn(dense_model, x, y, lambda: plain.zero_grad(set_to_none=True), plain.step)
    pruned = step_fn(masked_model, x, y, masked.zero_grad, lambda: masked.step(LR))

    def repeat(step: Callable[[], None]) -> Callable[[], None]:
        return timed(device, lambda: [step() for _ in range(steps)])

    actions = {"dense": repeat(dense), "masked": repeat(pruned)}
    for action in actions.values():
        action()
    times = interleaved(actions, repetitions)
    return {
        "model": name,
        "sparsity": 0.9,
        "batch_size": batch,
        "dense_step_seconds": summary([t / steps for t in times["dense"]]),
        "masked_step_seconds": summary([t / steps for t in times["masked"]]),
        "ratio": ratios(times["masked"], times["dense"]),
    }


def same_bits(data: Dataset, batch: int, bf16: bool, steps: int) -> dict:
    """Two runs of the same `steps` of training from the same seed: the SHA-256 of their weights."""
    digests, precision = [], "bf16" if bf16 else "fp32"
    sgd = SGD(batch, MOMENTUM, WEIGHT_DECAY)
    for _ in range(2):
        model = build_model("resnet20", CIFAR_SHAPE, 10, seed=0).to(data.x_train.device)
        masks = {n: m.to(data.x_train.device) for n, m in full_masks(model).items()}
        train(model, data, [LR] * steps, masks, sgd, seed=0, precision=precision)
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digests.append(digest.hexdigest())
    return {"precision": precision, "steps": steps, "digests": digests, "identical": len(set(digests)) == 1}


def side_by_side(name: str, counts: list[int], batch: int, steps: int) -> list[dict]:
    """For each n in `counts`: n processes training `name` on the same GPU at once, released
    together after their warm-up; samples/s summed over them, against one process alone."""
    results = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="rewind-gpu-") as folder:
            command = [
                sys.executable,
                "-m",
                "bench.gpu",
                "--worker",
                name,
                "--batch",
                str(batch),
                "--steps",
                str(steps),
            ]
            workers = [
                subprocess.Popen([*command, "--barrier", f"{folder}/{i}"], stdout=subprocess.PIPE, text=True)
                for i in range(count)
            ]
            while len(list(Path(folder).glob("*.ready"))) < count:
                if any(worker.poll() is not None for worker in workers):
                    raise RuntimeError("a side-by-side worker ended before its warm-up finished")
                time.sleep(0.05)
            (Path(folder) / "go").touch()
            seconds = [float(worker.communicate()[0]) for worker in workers]
        results.append({"processes": count, "samples_per_second": count * steps * batch / max(seconds)})
    alone = results[0]["samples_per_second"]
    return [result | {"throughput_vs_one": result["samples_per_second"] / alone} for result in results]


def worker(name: str, batch: int, steps: int, barrier: str) -> None:
    """One side-by-side process: warm up, say so, wait for the others, time `steps` steps, print the seconds."""
    device = torch.device("cuda")
    data = cifar_like(batch * steps, device)
    model = build_model(name, CIFAR_SHAPE, 10, seed=0).to(device)
    masks = {n: m.to(device) for n, m in full_masks(model).items()}
    sgd = SGD(batch, MOMENTUM, WEIGHT_DECAY)
    train(model, data, [LR] * 10, masks, sgd, seed=0)
    torch.cuda.synchronize(device)
    Path(f"{barrier}.ready").touch()
    while not (Path(barrier).parent / "go").exists():
        time.sleep(0.01)
    started = time.perf_counter()
    train(model, data, [LR] * steps, masks, sgd, seed=0)
    torch.cuda.synchronize(device)
    print(time.perf_counter() - started)


def machine(device: torch.device) -> dict:
    described = {"python": platform.python_version(), "torch": torch.__version__, "device": device.type}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        described |= {
            "gpu": properties.name,
            "multiprocessors": properties.multi_processor_count,
            "memory_gib": properties.total_memory / 2**30,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return described


def run(device: torch.device, quick: bool) -> dict:
    if device.type == "cuda":  # as the stages set it up (stages/shared/device.py)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    batch = QUICK_BATCH if quick else BATCH
    samples = batch * (2 if quick else 100)
    repetitions = 2 if quick else 5
    data = cifar_like(samples, device)
    models = ["resnet20"] if quick else ["resnet20", "resnet56"]
    results: dict = {"mode": "quick" if quick else "full", "machine": machine(device)}
    started = time.perf_counter()
    results["loop"] = [loop_against_plain(m, data, batch, bf16, repetitions) for m in models for bf16 in (False, True)]
    results["masked_step"] = masked_step(models[-1], device, batch, repetitions, 2 if quick else 20)
    steps = 2 if quick else 40
    batches_of_four = cifar_like(batch * 4, device)
    results["determinism"] = [same_bits(batches_of_four, batch, bf16, steps) for bf16 in (False, True)]
    results["seconds"] = time.perf_counter() - started
    return results


def render(results: dict) -> str:
    lines = [f"{results['machine']}"]
    for case in results["loop"]:
        ours, ratio = case["ours_samples_per_second"]["median"], case["ratio"]["median"]
        epoch = case["cifar10_epoch_seconds"]["median"]
        lines.append(
            f"{case['model']} {case['precision']}: our loop {ours:,.0f} samples/s, {ratio:.3f}× the plain loop's speed "
            f"(spread {case['ratio']['min']:.3f}–{case['ratio']['max']:.3f}); a CIFAR-10 epoch {epoch:.2f} s"
        )
    step = results["masked_step"]
    lines.append(f"masked step / dense step ({step['model']}, 90% pruned): {step['ratio']['median']:.3f}×")
    for case in results.get("side_by_side", []):
        lines.append(
            f"{case['processes']} processes on one GPU: {case['samples_per_second']:,.0f} samples/s, "
            f"{case['throughput_vs_one']:.2f}× one alone"
        )
    for check in results["determinism"]:
        lines.append(f"two identical {check['precision']} runs give the same bits: {check['identical']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs, not figures")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument(
        "--side-by-side", type=int, nargs="*", metavar="N", help="also train N ResNet-56 processes at once (GPU)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one process of --side-by-side
    parser.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.batch, args.steps, args.barrier)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: python -m bench.gpu: no CUDA device here; --device cpu runs it on the CPU", file=sys.stderr)
        return 2
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts: deterministic cuBLAS
    results = run(device, args.quick)
    if args.side_by_side and device.type == "cuda":
        results["side_by_side"] = side_by_side("resnet56", [1, *args.side_by_side], BATCH, args.steps)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
