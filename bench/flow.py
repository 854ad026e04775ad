"""`python -m bench.flow` (`make bench-flow`): the flow with parallel branches against `dvc repro` (a stage at a time).

Each measurement starts from a clean state: a fresh copy of the project's code, params.yaml and
dvc.yaml in a new git repo, with an empty DVC cache (so no run-cache either). In one process:

1. `dvc repro` of every stage, one at a time (a stage's runs side by side, as `dvc repro` does):
   the baseline;
2. the flow with `--parallelism` stages at a time (default: the flow's, options.stages_at_once):
   speed-up = (1) / (2);
3. the flow with one stage at a time: Prefect's own overhead = its wall time minus the sum of
   its stage tasks' times (`--no-overhead` skips this run).

Stage times are the task runs' start and end as Prefect's server records them (its public client),
so the flow carries nothing for the benchmark.

Each run's CPU seconds say what bounds the speed-up: a flow cannot end before its CPU work,
spread over every core, is done, so `dvc repro` wall / (flow CPU / cores) is the most that
parallel branches can give on this machine. CPU is split into the stage processes with their
`dvc repro -s` (children of this process), the flow's own Prefect client (this process), and the
rest of the machine (the Prefect server, anything else running).

The baseline runs with no Prefect server up; flow times count from the flow's start to its end
against an already running local Prefect server, so the server's start-up is not in them.
`--repeat N` measures N baseline-and-flow pairs one after the other and reports the pair with
the median speed-up (a shared machine's speed drifts by several percent between runs).
`measure()` returns the numbers (`python -m bench` reports them); `--json PATH` writes them.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.sandbox import make_project
from pipeline.dvc_cli import stage_env
from pipeline.options import RunOptions, read_params, stages_at_once

RECORDED_WAIT_S = 30.0  # for the server to record the last task runs' ends after the flow returns


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far: this process, its reaped children, and the whole machine."""
    times = os.times()
    return {
        "flow_process": times.user + times.system,
        "children": times.children_user + times.children_system,
        "machine": _machine_cpu_seconds(),
    }


def _machine_cpu_seconds() -> float:
    """Busy CPU seconds of every core since boot, from /proc/stat (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_used(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds since `before`, split as in the module docstring."""
    after = cpu_seconds()
    used = {name: after[name] - before[name] for name in after}
    return {
        "stages_and_dvc": used["children"],
        "prefect_client": used["flow_process"],
        "prefect_server_and_rest": max(0.0, used["machine"] - used["children"] - used["flow_process"]),
        "total": used["machine"],
    }


def time_dvc_repro(project: Path) -> dict[str, Any]:
    """Wall and CPU seconds of a plain `dvc repro`, every stage one after the other."""
    before, started = cpu_seconds(), time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=project, env=stage_env(), capture_output=True, text=True
    )  # plain DVC, as `make run` runs it
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"error: dvc repro failed in {project}:\n{result.stderr[-2000:]}")
    return {"wall_s": seconds, "cpu_s": cpu_used(before)}


def time_flow(project: Path, parallelism: int) -> dict[str, Any]:
    """Wall seconds of the flow, the sum of its stages' seconds, and the time no stage was running."""
    from pipeline.flow import rewind  # imports Prefect

    before, started = cpu_seconds(), time.perf_counter()
    started_at = time.time()
    state = rewind(options=RunOptions(parallelism=parallelism), project=str(project), return_state=True)
    wall = time.perf_counter() - started
    cpu = cpu_used(before)
    summary = state.result(raise_on_failure=False)
    if not state.is_completed():
        raise SystemExit(f"error: the flow failed in {project}: {summary}")
    spans = stage_spans(state.state_details.flow_run_id, len(summary.stages))
    return {
        "wall_s": wall,
        "stages": len(summary.stages),
        "stage_sum_s": sum(end - start for start, end in spans.values()),
        "idle_s": wall - _union(list(spans.values())),  # no stage running: Prefect, DVC DAG reading, artifact
        "first_stage_after_s": min(start for start, _ in spans.values()) - started_at,
        "cpu_s": cpu,
        "timeline": {  # stage → [start, end] in seconds from the flow's start: where the cores idled
            stage: [start - started_at, end - started_at] for stage, (start, end) in spans.items()
        },
    }


def stage_spans(flow_run_id: UUID, stages: int) -> dict[str, tuple[float, float]]:
    """Each stage task's [start, end] (epoch seconds) in a finished flow run, from Prefect's server.

    The server records task runs from events the client sends, so the last ends may arrive just
    after the flow returns: wait for all `stages` of them, RECORDED_WAIT_S at most.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + RECORDED_WAIT_S
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            spans = {r.name: (r.start_time.timestamp(), r.end_time.timestamp()) for r in runs if r.end_time}
            if len(spans) >= stages or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


def measure(project: Path, parallelism: int | None = None, overhead: bool = True, repeat: int = 1) -> dict[str, Any]:
    """The benchmark's numbers (see the module docstring) for the project at `project`.

    With `repeat` > 1, baseline and flow are measured that many times, one after the other; the
    top-level figures are those of the pair with the median speed-up, `repeats` has every pair.
    """
    parallelism = stages_at_once(RunOptions(parallelism=parallelism), read_params(project))
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="rewind-bench-") as tmp:
        base = Path(tmp)
        pairs = [_pair(project, base / f"pair-{index}", parallelism, cores) for index in range(repeat)]
        results = {"parallelism": parallelism, "cores": cores, **median_pair(pairs)}
        results["repeats"] = [
            {key: pair[key] for key in ("dvc_repro_s", "speedup", "speedup_bound")} | {"flow_s": pair["flow"]["wall_s"]}
            for pair in pairs
        ]
        if overhead:
            with _prefect_server(project, base / "prefect-sequential"):
                sequential = results["flow_sequential"] = time_flow(make_project(base / "flow-1", source=project), 1)
            results["prefect_overhead_s"] = sequential["wall_s"] - sequential["stage_sum_s"]
            results["prefect_overhead_per_stage_s"] = results["prefect_overhead_s"] / sequential["stages"]
        return results


def _pair(project: Path, base: Path, parallelism: int, cores: int) -> dict[str, Any]:
    """`dvc repro` (no Prefect server running), then the flow, each on its own fresh copy."""
    repro = time_dvc_repro(make_project(base / "repro", source=project))
    with _prefect_server(project, base / "prefect"):
        flow = time_flow(make_project(base / "flow", source=project), parallelism)
    return {
        "dvc_repro_s": repro["wall_s"],
        "dvc_repro_cpu_s": repro["cpu_s"],
        "flow": flow,
        "speedup": repro["wall_s"] / flow["wall_s"],
        "speedup_bound": repro["wall_s"] / (flow["cpu_s"]["total"] / cores),
    }


def median_pair(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pair with the median speed-up (the upper one of an even count): a real run, not a mix."""
    return sorted(pairs, key=lambda pair: pair["speedup"])[len(pairs) // 2]


@contextmanager
def _prefect_server(project: Path, home: Path) -> Iterator[None]:
    """A local Prefect server for the flows of the block; their logs are sent before it stops."""
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.serve import free_port, local_server

    with local_server(free_port(), home, project) as env, temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        yield
        APILogWorker.drain_all(timeout=5)


def report(results: dict[str, Any]) -> str:
    """The numbers as a few lines of text."""
    flow = results["flow"]
    lines = [
        f"dvc repro (stage by stage):    {results['dvc_repro_s']:7.1f} s",
        f"flow, parallelism {results['parallelism']}:          {flow['wall_s']:7.1f} s"
        f"  ({flow['stages']} stages, {flow['stage_sum_s']:.1f} s of stage time, {flow['idle_s']:.1f} s with none)",
        f"speed-up:                      {results['speedup']:7.2f}x" + _spread(results["repeats"]),
        _cpu_line("dvc repro CPU:", results["dvc_repro_cpu_s"], results["dvc_repro_s"]),
        _cpu_line("flow CPU:", flow["cpu_s"], flow["wall_s"]),
        f"speed-up bound:                {results['speedup_bound']:7.2f}x"
        f"  (dvc repro wall / (flow CPU / {results['cores']} cores))",
    ]
    if "flow_sequential" in results:
        sequential = results["flow_sequential"]
        lines += [
            f"flow, parallelism 1:           {sequential['wall_s']:7.1f} s"
            f"  ({sequential['stage_sum_s']:.1f} s in stages)",
            f"Prefect overhead:              {results['prefect_overhead_s']:7.1f} s"
            f"  ({results['prefect_overhead_per_stage_s'] * 1000:.0f} ms per stage)",
        ]
    return "\n".join(lines)


def _spread(repeats: list[dict[str, Any]]) -> str:
    """For several pairs: every pair's speed-up, after the median one's shown on the line."""
    if len(repeats) < 2:
        return ""
    each = ", ".join(f"{run['speedup']:.2f}x ({run['dvc_repro_s']:.1f} s -> {run['flow_s']:.1f} s)" for run in repeats)
    return f"  (median of {len(repeats)}: {each})"


def _cpu_line(label: str, cpu: dict[str, float], wall: float) -> str:
    return (
        f"{label:<30}{cpu['total']:7.1f} s  ({cpu['total'] / wall:.2f} cores busy: stages and DVC "
        f"{cpu['stages_and_dvc']:.1f} s, Prefect client {cpu['prefect_client']:.1f} s, "
        f"server and rest {cpu['prefect_server_and_rest']:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__.split("\n")[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="the project to copy (default: here)")
    parser.add_argument("--parallelism", type=int, help="stages at a time in the flow (default: the flow's)")
    parser.add_argument("--no-overhead", action="store_true", help="skip the one-at-a-time flow run")
    parser.add_argument("--repeat", type=int, default=1, help="baseline and flow pairs to measure (default 1)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the Prefect server
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.parallelism is not None and args.parallelism < 1:
        parser.error("--parallelism must be at least 1")
    results = measure(args.project.resolve(), args.parallelism, overhead=not args.no_overhead, repeat=args.repeat)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _union(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by the intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


if __name__ == "__main__":
    raise SystemExit(main())
