"""The import budget of every stage: what each stage module imports while it really runs (lazy
imports included), from `python -X importtime`, and which costly modules it imports that it does not use.

Every stage is a process of its own, so its imports are paid at every stage start: `torch` is the
floor (every stage computes with it), the rest should be what the stage uses.
"""

import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import yaml

from bench.stats import summary
from pipeline.dvc_cli import stage_env

# Modules that cost start-up time (or drag in more) and that a stage imports only where it uses them.
COSTLY = ("torch.onnx", "onnx", "onnxscript", "torch._dynamo", "sympy", "matplotlib", "scipy", "sklearn", "dvclive")
USES = {
    "stages.prepare": {"sklearn", "scipy"},  # digits ships with scikit-learn, which imports scipy
    "stages.train": {"dvclive"},  # the live curves
    "stages.retrain": {"dvclive"},
    "stages.report": {"matplotlib", "scipy"},  # the figures; Student's t
}
ONNX = {"torch.onnx", "onnx", "onnxscript", "sympy", "torch._dynamo"}  # what torch's exporter brings, when asked


def stage_commands(project: Path) -> dict[str, list[str]]:
    """One command line per stage module, as dvc.yaml runs it, for the project's first compared
    strategy, first round and first swept strategy."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    strategy, swept = params["compare"][0], params["sweep"]["strategies"][0]
    pair = ["--strategy", strategy, "--round", "0"]
    return {
        "stages.validate": [],
        "stages.prepare": [],
        "stages.train": [],
        "stages.prune": pair,
        "stages.retrain": pair,
        "stages.sweep": ["--strategy", swept],
        "stages.export": [],
        "stages.evaluate": [],
        "stages.report": [],
    }


def imported(stderr: str) -> dict[str, int]:
    """Module → its own import microseconds, from `-X importtime` lines on stderr."""
    modules = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            modules[name.strip()] = int(own)
    return modules


def packages_among(names: Iterable[str], modules: set[str]) -> set[str]:
    """Which of `names` were imported, as `modules` lists them: a package counts when it or any of
    its submodules is there (`-X importtime` may list a package imported lazily only by its parts)."""
    return {name for name in names if any(m == name or m.startswith(name + ".") for m in modules)}


def unwanted(module: str, modules: set[str]) -> list[str]:
    """The costly modules a run of `module` imported without using them."""
    return sorted(packages_among(COSTLY, modules) - USES.get(module, set()))


def import_times(project: Path, module: str, arguments: list[str]) -> dict[str, int]:
    """Run the stage `module` in `project` under `-X importtime`: every module it imported, with
    its own import microseconds. A failing stage raises with its output."""
    command = [sys.executable, "-X", "importtime", "-m", module, *arguments]
    result = subprocess.run(command, cwd=project, env=stage_env(), capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {lines[-5:]}")
    return imported(result.stderr)


def measure(project: Path, repetitions: int) -> dict[str, dict]:
    """Per stage module: import seconds (median over `repetitions` runs of the real stage in
    `project`, whose inputs must exist), the share of torch, the largest other packages, and the
    costly modules it imported without using them."""
    results = {}
    for module, arguments in stage_commands(project).items():
        totals, torch_seconds, modules = [], [], {}
        for _ in range(repetitions):
            modules = import_times(project, module, arguments)
            totals.append(sum(modules.values()) / 1e6)
            torch_seconds.append(sum(t for m, t in modules.items() if m.split(".")[0] in ("torch", "torchgen")) / 1e6)
        packages = Counter()
        for name, own in modules.items():
            packages[name.split(".")[0]] += own
        others = [(name, own) for name, own in packages.most_common() if name not in ("torch", "torchgen")]
        results[module] = {
            "import_seconds": summary(totals),
            "torch_seconds": summary(torch_seconds),
            "largest_other_packages": {name: round(own / 1e6, 4) for name, own in others[:6]},
            "modules": len(modules),
            "unwanted": unwanted(module, set(modules)),
        }
    return results
