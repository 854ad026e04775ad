"""End to end: a real `prefect server start` on 127.0.0.1, the deployment of prefect.yaml, a run with
an override, a worker that executes it once; the run completes and the DVC experiment exists."""

import json
import re
import subprocess

import httpx
import pytest

from pipeline.serve import DEPLOYMENT, free_port, local_server, prefect, register, worker_command
from tests.conftest import dvc, run
from tests.pipeline.conftest import stale

pytestmark = pytest.mark.slow


def test_scheduled_deployment_runs_an_override_as_an_experiment(flowed, tmp_path):
    project, _, _, _ = flowed
    port = free_port()
    options = {"strategies": ["lrr"], "overrides": {"strategies.lrr.budget": 1}, "experiment": "e2e-lrr-only"}
    with local_server(port, tmp_path / "prefect-home", project, log=tmp_path / "server.log") as env:
        register(project, env)
        deployment = json.loads(prefect("deployment", "inspect", DEPLOYMENT, "--output", "json", env=env, cwd=project))
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 2 * * *"]
        assert deployment["work_pool_name"] == "rewind-process"
        started = prefect(
            "deployment", "run", DEPLOYMENT, "--param", f"options={json.dumps(options)}", env=env, cwd=project
        )
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)
        worker = subprocess.run(
            worker_command(run_once=True), cwd=project, env=env, capture_output=True, text=True, timeout=400
        )
        flow_run = httpx.get(f"{env['PREFECT_API_URL']}/flow_runs/{flow_run_id}", timeout=10).json()
        assert flow_run["state_type"] == "COMPLETED", worker.stdout[-3000:] + worker.stderr[-3000:]
        assert flow_run["parameters"]["options"]["overrides"] == {"strategies.lrr.budget": 1}
    experiments = json.loads(dvc("exp", "show", "--json", cwd=project).stdout)
    names = {experiment["name"] for commit in experiments for experiment in commit.get("experiments") or []}
    assert "e2e-lrr-only" in names
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    assert stale(project) == set()
