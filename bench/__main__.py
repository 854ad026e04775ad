"""`python -m bench [--quick] [--out PATH]`: every figure of bench/, printed as a table and written as JSON."""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from bench import imports, micro, portable, repro
from bench.project import Project, default_params, quick_params, small_params
from bench.sandbox import make_project
from bench.table import render
from stages.shared.parallel import WORKERS_ENV

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def machine() -> dict:
    """What the figures were measured on; the load average says whether others shared the CPU."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")]
    return {
        "cpu": names[0] if names else platform.processor(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_start": list(os.getloadavg()),
    }


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def dvc_sections(quick: bool, root: Path, before: str | None) -> dict:
    """Sections 2-6 on throwaway copies: the default params (tiny ones with --quick); with `before`,
    the breakdown of that git revision's clean repro too (its code and its params.yaml), in the same run."""
    params = quick_params() if quick else default_params()
    project = Project(root / "main", params)
    full = project.repro()
    sequential = Project(root / "sequential", params, extra_env={WORKERS_ENV: "1"})
    one_at_a_time = sequential.repro()
    warm = Project(root / "warm", params)
    reps = 1 if quick else 3
    results = {
        "stage_overhead": repro.stage_overhead(project, full, sequential, one_at_a_time, warm, reps),
        "memory": repro.memory(full),
        "noop": repro.noop(project, 1 if quick else 5),
        "incremental": repro.incremental(project, full),
        "imports": imports.measure(project.path, reps),
    }
    if before is not None:
        results["stage_overhead_before"] = repro.revision_overhead(before, root / "before", reps)
    source = make_project(root / "parallel", quick_params() if quick else small_params())
    results["parallel"] = repro.parallel(source, quick)
    results["parallel"]["config"] = "quick" if quick else "tiny_params() with a 4-point sweep"
    return results


def run(quick: bool, before: str | None = None) -> dict:
    started = time.perf_counter()
    results: dict = {"mode": "quick" if quick else "full", "machine": machine()}
    sections = {}
    with _section(sections, "mask_overhead"):
        results["mask_overhead"] = micro.mask_section(quick)
    with _section(sections, "roofline"):
        results["roofline"] = micro.roofline(quick)
    with _section(sections, "portable_kernels"):
        results["portable_kernels"] = portable.section(quick)
    with _section(sections, "dvc"), tempfile.TemporaryDirectory(prefix="rewind-bench-") as tmp:
        results |= dvc_sections(quick, Path(tmp), before)
    results["section_seconds"] = sections
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["seconds"] = time.perf_counter() - started
    return results


@contextmanager
def _section(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started
    print(f"bench: {name} done in {seconds[name]:.0f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny config, fewer repetitions: checks, not figures")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of the step and loop figures; default: torch's own choice "
        "(stage processes use params.yaml train.threads)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also break down the clean repro of this git revision (its code and params.yaml): a before/after",
    )
    args = parser.parse_args(argv)
    if args.threads is not None:  # a CPU shared with other jobs: 2 threads on a busy 2-core machine thrash
        torch.set_num_threads(args.threads)
    results = run(args.quick, args.before)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\n{results['mode']} run, {results['seconds']:.0f} s; written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
