"""Figures from real `dvc repro` runs of a throwaway project: stage overhead against compute,
no-op and incremental reruns, peak memory per stage, and the Prefect flow against sequential DVC."""

import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

from bench import flow
from bench.project import Project, Repro
from bench.sandbox import ROOT
from bench.stats import interleaved, summary
from rewind.checkpoint import load_tensors
from stages.shared import layout

WALL_OVER_COMPUTE_TARGET, NOOP_TARGET = 1.6, 3.0
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


TRAINING_MODULES = ("stages.train", "stages.retrain", "stages.sweep")
WORK = {  # the breakdown's parts for the stage processes' own work, beyond their start and imports
    "stages.export": "export",
    "stages.evaluate": "evaluate_and_report",
    "stages.report": "evaluate_and_report",
}


def stage_overhead(
    project: Project, full: Repro, sequential: Project, one_at_a_time: Repro, warm: Project, repetitions: int
) -> dict:
    """Where a clean `dvc repro` spends its wall time, against its training compute.

    `full` is the repro as users run it (runs of a stage side by side on free cores); `one_at_a_time`
    a clean repro of the same params with every run after the other (`REWIND_WORKERS=1`), whose
    training seconds are the compute: runs that share the cores each take longer, so summing theirs
    would flatter the ratio. The breakdown of `full` adds up to its wall by construction (see
    `breakdown`). `warm` is a third copy, reproduced as `make run` does it (under the warm stage
    server), whose outputs must be those of `full`."""
    compute = sum(t["compute_seconds"] for t in sequential.timings())
    parts = breakdown(project, full, repetitions)
    under_server = warm.repro(warm=True)
    return {
        "wall_seconds": full.wall,
        "stages_run": len(full.ran),
        "stage_processes": len(full.processes),
        "compute_seconds": compute,
        "wall_over_compute": full.wall / compute,
        "target_max_wall_over_compute": WALL_OVER_COMPUTE_TARGET,
        "one_at_a_time": {
            "wall_seconds": one_at_a_time.wall,
            "wall_over_compute": one_at_a_time.wall / compute,
            "compute_seconds_side_by_side": sum(t["compute_seconds"] for t in project.timings()),
        },
        "make_run": {
            "command": "python -m stages.shared.warm_server dvc repro",
            "wall_seconds": under_server.wall,
            "wall_over_compute": under_server.wall / compute,
            "stages_run": len(under_server.ran),
            "peak_stage_process_rss_mib": max(p.maxrss_kib for p in under_server.processes) / 1024,
            "same_outputs_as_dvc_repro": lock_outs(warm.path) == lock_outs(project.path),
        },
        "breakdown_seconds": parts["seconds"],
        "breakdown_share_of_wall": {name: value / full.wall for name, value in parts["seconds"].items()},
        "import_seconds": parts["imports"],
        "data_load_seconds": data_load_seconds(project, repetitions),
        "per_module": _per_module(full, parts["imports"]),
        "definitions": {
            "compute_seconds": "training seconds of every run (seed, sweep point), summed, in a clean repro with "
            "one run at a time",
            "training_stages": "in-process seconds of the train, retrain/control and sweep stages: training "
            "(side by side where cores are free), loading inputs, writing outputs",
            "process_start_and_imports": "per stage process, `python -c 'import <its module>'` (median)",
            "process_exit_and_setup": "training stage processes' wall beyond their start, imports and in-process "
            "seconds: argparse, params validation, exit",
            "other_stages": "validate, prepare and prune processes' wall beyond start and imports",
            "dvc_bookkeeping": "the repro's wall outside every stage process: DVC reading params and hashing, "
            "writing dvc.lock and caching outputs after each stage",
        },
    }


def lock_outs(project: Path) -> dict[str, list]:
    """Every stage's outputs as dvc.lock records them (path, hash, size)."""
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {name: stage.get("outs", []) for name, stage in stages.items()}


def breakdown(project: Project, full: Repro, repetitions: int) -> dict:
    """The parts of `full`'s wall, in seconds, and the import seconds per stage module they use."""
    modules = sorted({p.module for p in full.processes})
    imports = import_seconds(project, modules, repetitions)
    shim = shim_seconds(project, repetitions)
    parts = dict.fromkeys(
        (
            "training_stages",
            "export",
            "evaluate_and_report",
            "other_stages",
            "process_start_and_imports",
            "process_exit_and_setup",
            "shim_observation",
            "dvc_bookkeeping",
        ),
        0.0,
    )
    in_process = sum(t["in_process_seconds"] for t in project.timings())
    parts["training_stages"] = in_process
    for process in full.processes:
        start = imports[process.module]["median"]
        parts["process_start_and_imports"] += start
        if process.module in TRAINING_MODULES:
            parts["process_exit_and_setup"] += process.wall - start
        else:
            parts[WORK.get(process.module, "other_stages")] += process.wall - start
    parts["process_exit_and_setup"] -= in_process
    parts["shim_observation"] = shim * len(full.processes)
    parts["dvc_bookkeeping"] = full.wall - sum(p.wall for p in full.processes) - parts["shim_observation"]
    return {"seconds": parts, "imports": imports}


def revision_overhead(revision: str, root: Path, repetitions: int) -> dict:
    """The clean repro of a git revision's code and params.yaml (its own default run), broken down
    as `stage_overhead` does, with that code's own measure of compute (its timings files)."""
    source = root / "source"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    project = Project(root, yaml.safe_load((source / "params.yaml").read_text()), source=source)
    full = project.repro()
    compute = sum(t["compute_seconds"] for t in project.timings())
    parts = breakdown(project, full, repetitions)
    return {
        "revision": revision,
        "wall_seconds": full.wall,
        "stages_run": len(full.ran),
        "compute_seconds": compute,
        "wall_over_compute": full.wall / compute,
        "breakdown_seconds": parts["seconds"],
        "per_module": _per_module(full, parts["imports"]),
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
