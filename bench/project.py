"""A throwaway copy of the project in a temporary git repo, and `dvc repro` runs of it whose stage
processes are observed through a `python` shim on PATH (wall seconds and peak memory of each).

The shim is how the figures split DVC's own time from the stages' without touching stages/: DVC
runs `python -m stages.<x>` from PATH, so a tiny `python -S` script first on PATH spawns the real
interpreter, waits for it with wait4 and appends one JSON line per stage process to a log.
"""

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.sandbox import ROOT, make_project, tiny_params
from pipeline.dvc_cli import stage_env
from stages.shared import layout

SHIM = '''#!{python} -S
"""Run the real interpreter, then log its argv, wall seconds and peak RSS (bench.project)."""
import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawn({python!r}, [{python!r}, *sys.argv[1:]], os.environ)
_, status, usage = os.wait4(pid, 0)
record = {{"argv": sys.argv[1:], "wall": time.perf_counter() - started, "maxrss_kib": usage.ru_maxrss}}
with open({log!r}, "a") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
'''


WARM_SERVER = [sys.executable, "-m", "stages.shared.warm_server"]


@dataclass(frozen=True)
class StageProcess:
    """One stage command as the shim saw it."""

    module: str
    argv: list[str]
    wall: float
    maxrss_kib: int


@dataclass(frozen=True)
class Repro:
    """One `dvc repro`: its wall seconds, the stages DVC says it ran, and their processes."""

    wall: float
    ran: list[str]
    processes: list[StageProcess]


def fitted_tiny_params() -> dict:
    """tiny_params(), with any strategy it does not shrink (budget > its 4 epochs) halved to fit."""
    params = tiny_params()
    epochs = params["train"]["epochs"]
    for strategy in params["strategies"].values():
        if strategy["budget"] > epochs:
            strategy["budget"] = epochs // 2
    return params


def quick_params() -> dict:
    """tiny_params() cut to one seed, one strategy (whose masks the controls retrain on), one round
    and one sweep point of another strategy (so that changing ft's budget reruns as few stages as
    possible): seconds per repro."""
    params = fitted_tiny_params()
    params.update(seeds=[0], compare=["ft"], rounds=[{"id": 0, "prev": "../dense"}])
    params["controls"]["masks_from"] = "ft"
    if "sweep" in params:
        params["sweep"].update(strategies=["lrr"], sparsities=[0.5], budgets=[1])
    return params


def small_params() -> dict:
    """tiny_params() with a sweep that fits its 4 epochs: about 20 stages of a few seconds each."""
    params = fitted_tiny_params()
    if "sweep" in params:
        params["sweep"].update(strategies=["ft", "lrr"], sparsities=[0.9], budgets=[1, 2])
    return params


def default_params() -> dict:
    """The committed params.yaml, as `make run` uses it."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


class Project:
    """A committed copy of the code (of this checkout, or of `source`) and `params` under `root`,
    with a shim bin folder beside it; its commands run with `extra_env` added to the stages' own."""

    def __init__(self, root: Path, params: dict, source: Path = ROOT, extra_env: dict[str, str] | None = None) -> None:
        self.path = make_project(root / "project", params, source)
        self.extra_env = extra_env or {}
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "stages.jsonl"
        shim = self.bin / "python"
        shim.write_text(SHIM.format(python=sys.executable, log=str(self.log)))
        shim.chmod(0o755)

    def env(self, observed: bool = True) -> dict[str, str]:
        """The stages' environment (telemetry off); `observed` puts the shim first on PATH."""
        env = stage_env() | self.extra_env
        if observed:
            env["PATH"] = f"{self.bin}:{env['PATH']}"
        return env

    def run(self, command: list[str], observed: bool = True) -> tuple[float, subprocess.CompletedProcess]:
        """Wall seconds and result of `command` in the project; a failure raises with DVC's output."""
        started = time.perf_counter()
        result = subprocess.run(command, cwd=self.path, env=self.env(observed), capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{tail}")
        return wall, result

    def repro(self, warm: bool = False) -> Repro:
        """`dvc repro` with every stage process logged by the shim; with `warm`, under the warm stage
        server as `make run` starts it (each stage process then hands its work to a forked child)."""
        self.log.unlink(missing_ok=True)
        command = [sys.executable, "-m", "dvc", "repro"]
        wall, result = self.run([*WARM_SERVER, *command] if warm else command)
        ran = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage '")]
        return Repro(wall, ran, self.processes())

    def processes(self) -> list[StageProcess]:
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [StageProcess(_module(r["argv"]), r["argv"], r["wall"], r["maxrss_kib"]) for r in records]

    def params(self) -> dict:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_param(self, dotted: str, value: object) -> None:
        """Change one key of the copy's params.yaml, as `dvc exp run -S` would before running."""
        params = self.params()
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def timings(self) -> list[dict[str, float]]:
        """What the training stages recorded in .rewind/timings/*.json (compute and in-process seconds)."""
        return [json.loads(p.read_text()) for p in sorted((self.path / layout.TIMINGS).glob("*.json"))]


def _module(argv: list[str]) -> str:
    """`-m stages.retrain --strategy ft` → `stages.retrain`; anything else is named by its argv."""
    if len(argv) >= 2 and argv[0] == "-m":
        return argv[1]
    return " ".join(argv)
