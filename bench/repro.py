"""Figures from real `dvc repro` runs of a throwaway project: stage overhead against compute,
no-op and incremental reruns, peak memory per stage, and the Prefect flow against sequential DVC."""

import sys
import time
from collections import defaultdict
from pathlib import Path

from bench import flow
from bench.project import Project, Repro
from bench.stats import interleaved, summary
from rewind.checkpoint import load_tensors
from stages.shared import layout

OVERHEAD_TARGET, NOOP_TARGET = 0.5, 3.0
INCREMENTAL_KEY = "strategies.ft.budget"


def import_seconds(project: Project, modules: list[str], repetitions: int) -> dict[str, dict]:
    """Seconds of `python -c "import <module>"` in the copy: interpreter start plus imports, per module.

    The bare interpreter and `import torch` are measured too, so the stages' own share shows.
    """
    statements = {"(interpreter)": "pass", "torch": "import torch"} | {m: f"import {m}" for m in modules}

    def python(statement: str):
        return lambda: project.run([sys.executable, "-c", statement], observed=False)

    times = interleaved({name: python(code) for name, code in statements.items()}, repetitions)
    return {name: summary(values) for name, values in times.items()}


def shim_seconds(project: Project, repetitions: int) -> float:
    """What the observing shim adds to one stage process: its own start-up, `-c pass` with and without."""
    times = interleaved(
        {
            "shim": lambda: project.run([str(project.bin / "python"), "-c", "pass"], observed=False),
            "real": lambda: project.run([sys.executable, "-c", "pass"], observed=False),
        },
        repetitions,
    )
    project.log.unlink(missing_ok=True)
    return max(0.0, summary(times["shim"])["median"] - summary(times["real"])["median"])


def data_load_seconds(project: Project, repetitions: int) -> dict:
    """Reading the prepared dataset, as every training stage does once."""
    path = project.path / layout.DATASET
    return summary([_timed_load(path) for _ in range(repetitions)])


def _timed_load(path: Path) -> float:
    started = time.perf_counter()
    load_tensors(path)
    return time.perf_counter() - started


def stage_overhead(project: Project, full: Repro, repetitions: int) -> dict:
    """Where a clean `dvc repro` spends its wall time; the parts add up to the wall by construction.

    compute and in-process seconds come from .rewind/timings/*.json (training stages only); process start
    and imports from import_seconds for each stage process the shim saw; DVC bookkeeping is the wall
    outside every stage process, less the shim's own start-up.
    """
    modules = sorted({p.module for p in full.processes})
    imports = import_seconds(project, modules, repetitions)
    shim = shim_seconds(project, repetitions)
    load = data_load_seconds(project, repetitions)
    timings = project.timings()
    compute = sum(t["compute_seconds"] for t in timings)
    in_process = sum(t["in_process_seconds"] for t in timings)
    stage_wall = sum(p.wall for p in full.processes)
    start = sum(imports[p.module]["median"] for p in full.processes)
    loading = load["median"] * len(timings)
    parts = {
        "compute": compute,
        "data_loading": loading,
        "training_stage_setup_and_io": in_process - compute - loading,
        "process_start_and_imports": start,
        "other_stage_work": stage_wall - start - in_process,
        "shim_observation": shim * len(full.processes),
        "dvc_bookkeeping": full.wall - stage_wall - shim * len(full.processes),
    }
    return {
        "wall_seconds": full.wall,
        "stages_run": len(full.ran),
        "stage_processes": len(full.processes),
        "training_stages": len(timings),
        "compute_seconds": compute,
        "overhead_ratio": (full.wall - compute) / compute,
        "target_max_overhead_ratio": OVERHEAD_TARGET,
        "breakdown_seconds": parts,
        "breakdown_share_of_wall": {name: value / full.wall for name, value in parts.items()},
        "import_seconds": imports,
        "data_load_seconds": load,
        "per_module": _per_module(full, imports),
        "definitions": {
            "other_stage_work": "stage process wall minus start+imports minus in-process seconds of training "
            "stages: argparse, params validation, exit, and all the work of prune/evaluate/report/validate/prepare",
            "training_stage_setup_and_io": "in-process minus compute minus data loading: checkpoints, dvclive, "
            "model building",
        },
    }


def _per_module(full: Repro, imports: dict[str, dict]) -> dict[str, dict]:
    walls: dict[str, list[float]] = defaultdict(list)
    for process in full.processes:
        walls[process.module].append(process.wall)
    return {
        module: {
            "count": len(values),
            "wall_seconds": summary(values),
            "start_and_import_seconds": imports[module]["median"],
        }
        for module, values in sorted(walls.items())
    }


def noop(project: Project, repetitions: int) -> dict:
    """`dvc repro` with everything up to date."""
    walls, ran = [], 0
    for _ in range(repetitions):
        repro = project.repro()
        walls.append(repro.wall)
        ran += len(repro.ran)
    return {"wall_seconds": summary(walls), "stages_run": ran, "target_max_seconds": NOOP_TARGET}


def incremental(project: Project, full: Repro) -> dict:
    """One strategy's budget changed: which stages rerun, and their wall against the clean run's."""
    params = project.params()
    budget = params["strategies"]["ft"]["budget"]
    changed = budget // 2 if budget > 1 else budget + 1
    project.set_param(INCREMENTAL_KEY, changed)
    repro = project.repro()
    return {
        "change": f"{INCREMENTAL_KEY}: {budget} -> {changed}",
        "stages_rerun": len(repro.ran),
        "stages_total": len(full.ran),
        "rerun": repro.ran,
        "wall_seconds": repro.wall,
        "full_wall_seconds": full.wall,
        "ratio_to_full": repro.wall / full.wall,
    }


def memory(full: Repro) -> dict:
    """Peak resident memory of each stage process (wait4's ru_maxrss), largest first per module."""
    largest = max(full.processes, key=lambda p: p.maxrss_kib)
    per_module: dict[str, int] = defaultdict(int)
    for process in full.processes:
        per_module[process.module] = max(per_module[process.module], process.maxrss_kib)
    return {
        "largest_stage": " ".join(largest.argv),
        "peak_rss_mib": largest.maxrss_kib / 1024,
        "peak_rss_mib_per_module": {m: kib / 1024 for m, kib in sorted(per_module.items())},
    }


def parallel(source: Path, quick: bool) -> dict:
    """bench.flow's figures (sequential `dvc repro` against the Prefect flow, each on a fresh copy of
    `source`, server start-up excluded); with `quick`, without the one-stage-at-a-time flow run."""
    measured = flow.measure(source, overhead=not quick)
    return {
        "status": "measured",
        "stages": measured["flow"]["stages"],
        "sequential_wall_seconds": measured["dvc_repro_s"],
        "parallel_wall_seconds": measured["flow"]["wall_s"],
        "speedup": measured["speedup"],
        "speedup_bound": measured["speedup_bound"],
        "flow_bench": measured,
        "note": "one run each (n=1), by bench.flow; Prefect server start-up is not in the flow's wall",
    }
