"""The cost of portable CPU kernels: training epochs under the stages' kernel pins with oneDNN off
(what every stage runs, stages.shared.kernels) against torch's native choice for this CPU.

The pins are environment variables read when torch loads, so each side is its own worker process,
started once and kept alive: `python -m bench.portable --worker ...` reads a number of epochs on
stdin, trains them, and answers with their seconds on stdout. The two workers take turns, their
order alternating, so both see the same load; the ratio pairs each portable repetition with the
native one taken beside it. The workers use params.yaml's `train.threads`, as the stages do.
`python -m bench.portable [--quick]` prints this figure alone as JSON.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import yaml

from bench.stats import alternated, ratios, summary

ROOT = Path(__file__).resolve().parents[1]
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 1e-4  # as bench.micro
SETTINGS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")  # what a worker reports seeing
SIDES = {
    "native": "no pins, oneDNN on: the kernels torch picks for this CPU",
    "portable": "the stages' pins set before torch loads (stages.shared.kernels), oneDNN off "
    "(stages.shared.device.use_portable_cpu_kernels)",
}


@dataclass(frozen=True)
class Case:
    """One training epoch: a model on digits (the default pipeline's data) or on random inputs."""

    model: str
    data: str  # "digits" or "random:C,H,W"
    batch: int
    samples: int  # training examples per epoch (digits: at most its 1,347)
    epochs: int  # per repetition, so that one lasts a tenth of a second or more
    repetitions: int


def cases(quick: bool) -> list[Case]:
    """The default pipeline's MLP on digits, and ResNet-20 on CIFAR-shaped inputs, a few batches."""
    if quick:
        return [Case("mlp", "digits", 64, 256, 1, 3), Case("resnet20", "random:3,32,32", 8, 16, 1, 3)]
    # ResNet-20: 4 batches of 128, seconds per epoch natively; 5 pairs, as the roofline figure takes.
    return [Case("mlp", "digits", 64, 1347, 10, 9), Case("resnet20", "random:3,32,32", 128, 512, 1, 5)]


def threads() -> int | None:
    """The stages' thread count: params.yaml's train.threads (None: torch's default)."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["threads"]


def environment(side: str) -> dict[str, str]:
    """This process's environment without any kernel setting, plus the pins on the portable side."""
    # Imported here, not at the top: a worker must not import `stages` before its side is chosen
    # (stages/__init__.py sets the pins whenever torch is not loaded yet).
    from stages.shared.kernels import PINS

    env = {name: value for name, value in os.environ.items() if name not in PINS}
    return env | PINS if side == "portable" else env


class Worker:
    """A worker process on one side, ready to train epochs of `case` when asked; its stderr goes to `log`."""

    def __init__(self, side: str, case: Case, thread_count: int | None, log: IO[str]) -> None:
        command = [sys.executable, "-m", "bench.portable", "--worker", side, "--model", case.model]
        command += ["--data", case.data, "--batch", str(case.batch), "--samples", str(case.samples)]
        command += [] if thread_count is None else ["--threads", str(thread_count)]
        self.log = log
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(side),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.ready = self._answer()  # what it runs: capability, oneDNN, threads, the settings it saw

    def epochs(self, count: int) -> float:
        """Seconds the worker took for `count` epochs, timed in the worker."""
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return self._answer()["seconds"]

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.seek(0)
            raise RuntimeError(f"bench.portable worker exited {self.process.returncode}:\n{self.log.read()[-2000:]}")
        return json.loads(line)

    def close(self) -> None:
        """End of input: the worker exits; killed if it does not within a minute."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(case: Case, thread_count: int | None) -> dict:
    """Seconds per epoch on each side, and portable / native per pair of repetitions."""
    with ExitStack() as stack:
        workers = {}
        for side in SIDES:
            log = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
            workers[side] = Worker(side, case, thread_count, log)
            stack.callback(workers[side].close)
        epochs = {side: partial(worker.epochs, case.epochs) for side, worker in workers.items()}
        times = alternated(epochs, case.repetitions)
    return {
        "model": case.model,
        "data": case.data,
        "input_shape": workers["native"].ready["input_shape"],
        "batch_size": case.batch,
        "samples_per_epoch": workers["native"].ready["samples"],
        "epochs_per_repetition": case.epochs,
        "kernels": {side: worker.ready["kernels"] for side, worker in workers.items()},
        "native_epoch_seconds": summary([t / case.epochs for t in times["native"]]),
        "portable_epoch_seconds": summary([t / case.epochs for t in times["portable"]]),
        "ratio": ratios(times["portable"], times["native"]),
    }


def section(quick: bool) -> dict:
    thread_count = threads()
    return {
        "sides": SIDES,
        "threads": thread_count,
        "cases": [measure(case, thread_count) for case in cases(quick)],
        "note": "ratio = portable / native seconds per training epoch (rewind.train.train, dense masks, SGD)",
    }


# The worker: nothing above imports torch, and the worker imports it only once its side is set up.


def worker(args: argparse.Namespace) -> None:
    if args.worker == "portable":
        import stages  # noqa: F401  the pins, before torch loads (they are in the environment already)
    import torch

    if args.worker == "portable":
        from stages.shared.device import use_portable_cpu_kernels

        use_portable_cpu_kernels()
    from rewind.data import Dataset, load_digits
    from rewind.models import build_model
    from rewind.prune import full_masks
    from rewind.train import SGD, train

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.data == "digits":
        digits = load_digits(0.25, 0)
        x, y = digits.x_train[: args.samples], digits.y_train[: args.samples]
    else:
        shape = tuple(int(n) for n in args.data.removeprefix("random:").split(","))
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(args.samples, *shape, generator=generator)
        y = torch.randint(0, 10, (args.samples,), generator=generator)
    data = Dataset(x, y, x[:1], y[:1], 10)
    model = build_model(args.model, data.input_shape, 10, seed=0)
    masks, sgd = full_masks(model), SGD(args.batch, MOMENTUM, WEIGHT_DECAY)

    def epochs(count: int) -> float:
        started = time.perf_counter()
        train(model, data, [LR] * count, masks, sgd, seed=0)
        return time.perf_counter() - started

    epochs(1)  # warm-up: allocator, first-call dispatch
    kernels = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_enabled": torch.backends.mkldnn.enabled,
        "torch_threads": torch.get_num_threads(),
        "environment": {name: os.environ.get(name) for name in SETTINGS},
    }
    _say({"input_shape": list(data.input_shape), "samples": len(y), "kernels": kernels})
    for line in sys.stdin:
        _say({"seconds": epochs(int(line))})


def _say(message: dict) -> None:
    print(json.dumps(message), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.portable", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 repetitions: a check, not a figure")
    worker_options = parser.add_argument_group("worker (started by the figure, not by hand)")
    worker_options.add_argument("--worker", choices=list(SIDES))
    worker_options.add_argument("--model", default="mlp")
    worker_options.add_argument("--data", default="digits", help="digits, or random:C,H,W")
    worker_options.add_argument("--batch", type=int, default=64)
    worker_options.add_argument("--samples", type=int, default=1347)
    worker_options.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args)
        return 0
    # This figure alone, as `python -m bench` writes it, with the load it ran under.
    load_at_start = list(os.getloadavg())
    results = section(args.quick)
    results |= {"load_average_at_start": load_at_start, "load_average_at_end": list(os.getloadavg())}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
