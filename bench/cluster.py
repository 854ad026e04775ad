"""`python -m bench.cluster`: what a stage costs on the several-machine path (pipeline.cluster).

On this machine, honestly: a bare git origin, a local directory as the DVC remote, a coordinator
clone and two worker clones (own DVC cache, own PREFECT_HOME), a real `prefect server`, the
`process` pool with two `--limit 1` workers, the tiny config cut to one seed and one round. Then,
one after the other, the same params reproduced by a local `dvc repro`.

Per dispatched stage, from Prefect's record of the flow run and the job's own `cluster-job` line:
- pickup: created by the coordinator → the job's code starts (worker poll, process start,
  pull step, `import prefect`, loading the flow);
- checkout: `git fetch` + `git checkout -f --detach`;
- repro: `dvc repro --pull <stage>`: pulling the run-cache and upstream outputs, validate, the stage;
- push: `dvc push --run-cache`;
- finish: the job's end → Prefect's end of the flow run.
The overhead is all but `repro`. The coordinator's final `dvc repro --pull` is timed apart.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.sandbox import GIT_IDENTITY, make_project, tiny_params
from pipeline.cluster import POOL, PREFECT_FILE, RECORD
from pipeline.dvc_cli import stage_env
from pipeline.serve import free_port, local_server, stop

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("pickup", "checkout", "repro", "push", "finish")


def cluster_params() -> dict:
    """The tiny config cut to one seed, one round, ft and lrr (+ the reinit control), lrr's sweep at one budget."""
    sweep = {"sweep.strategies": ["lrr"], "sweep.budgets": [1]}
    return tiny_params(seeds=[0], compare=["ft", "lrr"], rounds=[{"id": 0, "prev": "../dense"}], **sweep)


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=stage_env() | GIT_IDENTITY, check=True, capture_output=True)


def cluster_sandbox(base: Path, params: dict) -> dict[str, Path]:
    """origin.git (bare), the DVC remote `storage`, and clones of it: coordinator, w1, w2."""
    project = make_project(base / "seed", params)
    (project / PREFECT_FILE).write_text((ROOT / PREFECT_FILE).read_text())
    dvc = [sys.executable, "-m", "dvc", "remote"]
    for command in (["add", "-d", "shared", str(base / "storage")], ["modify", "shared", "verify", "true"]):
        subprocess.run([*dvc, *command], cwd=project, env=stage_env(), check=True, capture_output=True)
    git("add", "-A", cwd=project)
    git("commit", "-qm", "cluster: deployment, shared DVC remote", cwd=project)
    git("clone", "-q", "--bare", str(project), str(base / "origin.git"), cwd=base)
    paths = {"origin": base / "origin.git", "seed": project}
    for name in ("coordinator", "w1", "w2"):
        git("clone", "-q", str(base / "origin.git"), str(base / name), cwd=base)
        paths[name] = base / name
    return paths


def start_worker(clone: Path, name: str, env: dict[str, str], home: Path, log: Path) -> subprocess.Popen:
    """`python -m pipeline.cluster worker` in `clone`, polling every second, its output to `log`."""
    worker_env = env | {"PREFECT_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cluster", "--project", clone, "worker", "--name", name],
            cwd=clone,
            env=worker_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # serve.stop ends its job processes with it
        )


def wait_for_workers(api: str, count: int, timeout: float = 90) -> None:
    """Until `count` workers of the pool are ONLINE on the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = httpx.post(f"{api}/work_pools/{POOL}/workers/filter", json={}, timeout=5).json()
        if sum(worker["status"] == "ONLINE" for worker in workers) >= count:
            return
        time.sleep(1)
    raise RuntimeError(f"{count} workers not online after {timeout} s")


def records(log: Path) -> list[dict[str, Any]]:
    """The one record per job a worker's log holds (pipeline.cluster.RECORD)."""
    return [json.loads(line.split(RECORD, 1)[1]) for line in log.read_text().splitlines() if RECORD in line]


def flow_runs(api: str) -> dict[str, dict[str, Any]]:
    """Every flow run on the server by name (a stage's runs are named after it)."""
    return {run["name"]: run for run in httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).json()}


def phases(record: dict[str, Any], flow_run: dict[str, Any]) -> dict[str, float]:
    """One job's seconds in each of PHASES."""

    def seconds(iso: str) -> float:
        from datetime import datetime

        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

    return {
        "pickup": record["start"] - seconds(flow_run["created"]),
        "checkout": record["checked_out"] - record["start"],
        "repro": record["reproduced"] - record["checked_out"],
        "push": record["end"] - record["reproduced"],
        "finish": seconds(flow_run["end_time"]) - record["end"],
    }


def measure(base: Path) -> dict[str, Any]:
    """The cluster run and a local `dvc repro` of the same params, one after the other."""
    paths = cluster_sandbox(base, cluster_params())
    coordinator = paths["coordinator"]
    with local_server(free_port(), base / "server-home", coordinator, log=base / "server.log") as env:
        env = env | GIT_IDENTITY
        api = env["PREFECT_API_URL"]
        command = [sys.executable, "-m", "pipeline.cluster"]
        subprocess.run([*command, "deploy"], cwd=coordinator, env=env, check=True, capture_output=True)
        workers = [start_worker(paths[n], n, env, base / f"home-{n}", base / f"{n}.log") for n in ("w1", "w2")]
        try:
            wait_for_workers(api, 2)
            started = time.monotonic()
            done = subprocess.run([*command, "run"], cwd=coordinator, env=env, capture_output=True, text=True)
            wall = time.monotonic() - started
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
            runs = flow_runs(api)
        finally:
            for worker in workers:
                stop(worker)
    jobs = [phases(job, runs[job["stage"]]) for n in ("w1", "w2") for job in records(base / f"{n}.log")]
    reference = make_project(base / "reference", cluster_params())
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=reference, env=stage_env(), check=True, capture_output=True
    )
    local = time.monotonic() - started
    return {"stages": len(jobs), "cluster_wall_s": wall, "local_dvc_repro_s": local, "jobs": jobs}


def report(results: dict[str, Any]) -> str:
    jobs = results["jobs"]
    lines = [f"{results['stages']} dispatched stages, 2 workers (tiny config, 1 seed, 1 round), median [min-max] s:"]
    for phase in PHASES:
        values = [job[phase] for job in jobs]
        lines.append(f"  {phase:9s}{statistics.median(values):6.1f}  [{min(values):.1f}-{max(values):.1f}]")
    overhead = [sum(job[p] for p in PHASES if p != "repro") for job in jobs]
    lines.append(f"  overhead {statistics.median(overhead):6.1f}  (all but repro)")
    lines.append(f"cluster run {results['cluster_wall_s']:.0f} s; local dvc repro {results['local_dvc_repro_s']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="build the sandbox here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        results = measure(base)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
