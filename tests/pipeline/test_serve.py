"""End to end: a real `prefect server start` on 127.0.0.1, the deployment of prefect.yaml, runs that a
worker executes once: an override run completes as a DVC experiment, a failed run fires the failure
automation's webhook; and Ctrl-C on `make prefect-up` stops its server and worker."""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from pipeline.results import REPORT_KEY
from pipeline.serve import (
    AUTOMATION,
    DEPLOYMENT,
    HOST,
    free_port,
    local_server,
    notify_on_failure,
    prefect,
    register,
    worker_command,
)
from tests.browser import open_page
from tests.conftest import ROOT, dvc, run
from tests.pipeline.conftest import stale

pytestmark = pytest.mark.slow


class Webhook:
    """A local HTTP endpoint that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        received: queue.Queue = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def served(flowed, tmp_path_factory) -> Iterator[tuple[Path, dict[str, str], Webhook]]:
    """The flowed project deployed on a real local server, its failure automation posting to a Webhook."""
    project = flowed[0]
    home = tmp_path_factory.mktemp("prefect-home")
    hook = Webhook()
    with local_server(free_port(), home, project, log=home / "server.log") as env:
        register(project, env)
        assert notify_on_failure(project, env, hook.url, None) == f"POST to {hook.url}"
        assert notify_on_failure(project, env, hook.url, None), "a second call updates, not duplicates"
        yield project, env, hook
    hook.server.shutdown()


def start_run(project: Path, env: dict[str, str], options: dict | None = None) -> str:
    """`prefect deployment run` of the deployment; the flow run's id."""
    extra = ["--param", f"options={json.dumps(options)}"] if options is not None else []
    started = prefect("deployment", "run", DEPLOYMENT, *extra, env=env, cwd=project)
    return re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)


def work_once(project: Path, env: dict[str, str], flow_run_id: str) -> dict:
    """A worker executes what is due; the flow run as the server then has it."""
    worker = subprocess.run(
        worker_command(run_once=True), cwd=project, env=env, capture_output=True, text=True, timeout=400
    )
    flow_run = httpx.get(f"{env['PREFECT_API_URL']}/flow_runs/{flow_run_id}", timeout=10).json()
    flow_run["worker_output"] = worker.stdout[-3000:] + worker.stderr[-3000:]
    return flow_run


def test_scheduled_deployment_runs_an_override_as_an_experiment(served):
    project, env, _ = served
    deployment = json.loads(prefect("deployment", "inspect", DEPLOYMENT, "--output", "json", env=env, cwd=project))
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 2 * * *"]
    assert deployment["work_pool_name"] == "rewind-process"
    options = {"strategies": ["lrr"], "overrides": {"strategies.lrr.budget": 1}, "experiment": "e2e-lrr-only"}
    flow_run = work_once(project, env, start_run(project, env, options))
    assert flow_run["state_type"] == "COMPLETED", flow_run["worker_output"]
    assert flow_run["parameters"]["options"]["overrides"] == {"strategies.lrr.budget": 1}
    experiments = json.loads(dvc("exp", "show", "--json", cwd=project).stdout)
    names = {experiment["name"] for commit in experiments for experiment in commit.get("experiments") or []}
    assert "e2e-lrr-only" in names
    assert run(["git", "status", "--porcelain"], project).stdout == ""
    assert stale(project) == set()


def test_a_failed_run_fires_the_failure_automation(served):
    project, env, hook = served
    automations = httpx.post(f"{env['PREFECT_API_URL']}/automations/filter", json={}, timeout=10).json()
    assert [automation["name"] for automation in automations] == [AUTOMATION], "made twice, kept once"
    flow_run_id = start_run(project, env, {"strategies": ["no-such-strategy"]})
    flow_run = work_once(project, env, flow_run_id)
    assert flow_run["state_type"] == "FAILED", flow_run["worker_output"]
    posted = hook.received.get(timeout=90)  # the server's triggers and actions services fire it
    assert f"rewind: run {flow_run['name']} of {DEPLOYMENT} Failed" in posted["text"]
    assert "no-such-strategy" in posted["text"], "the failure's message is in the notification"
    assert f"/runs/flow-run/{flow_run_id}" in posted["text"], "a link to the run in the UI"
    assert hook.received.empty(), "one notification per failed run"


def test_ctrl_c_stops_make_prefect_up_its_server_and_worker(tmp_path):
    """SIGINT to the process group, as Ctrl-C sends it, with SIGINT ignored on the way in as a
    shell without job control starts `make prefect-up &`: all of it is gone within seconds."""
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "home"))
    up = subprocess.Popen(
        ["sh", "-c", f"trap '' INT; exec make --no-print-directory prefect-up PREFECT_PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    home = f"PREFECT_HOME={env['PREFECT_HOME']}"
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if "started!" in line:  # the worker is polling the pool
                break
        assert any(f"Prefect UI: http://{HOST}:{port}" in line for line in lines), "".join(lines)
        assert _listening(port)
        interrupted = time.monotonic()
        os.killpg(up.pid, signal.SIGINT)
        while time.monotonic() - interrupted < 10 and (_processes_with(home) or _listening(port)):
            time.sleep(0.1)
        stopped_after = time.monotonic() - interrupted
        assert not _listening(port), "the server still answers 10 s after Ctrl-C"
        assert list(_processes_with(home).values()) == [], "still running 10 s after Ctrl-C"
        assert stopped_after < 5, f"stopped after {stopped_after:.1f} s"
        assert up.wait(timeout=5) == 0
    finally:
        for pid in _processes_with(home):
            os.kill(pid, signal.SIGKILL)


def _listening(port: int) -> bool:
    try:
        httpx.get(f"http://{HOST}:{port}/api/health", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def _processes_with(variable: str) -> dict[int, str]:
    """Live processes whose environment holds `variable` (NAME=value): pid → command line."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and variable.encode() in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def shown_as(text: str) -> str:
    """JavaScript: the innermost element of the page whose rendered text is exactly `text` (Prefect's
    markdown renderer draws paragraphs and headings as divs, so no tag name is assumed)."""
    return f"[...document.querySelectorAll('body *')].filter(e => e.innerText?.trim() === {json.dumps(text)}).pop()"


def test_the_ui_shows_the_report_artifact_with_its_figures(served, tmp_path):
    """In Prefect's own UI, in Chromium: the report artifact's tables and every figure drawn, and
    the report's first line, the answer, shown whole as the paragraph above the title (a paragraph
    broken over lines in the markdown would show as several lines)."""
    project, env, _ = served
    flow_run = work_once(project, env, start_run(project, env))
    assert flow_run["state_type"] == "COMPLETED", flow_run["worker_output"]
    api = env["PREFECT_API_URL"]
    query = {"artifacts": {"key": {"any_": [REPORT_KEY]}}, "sort": "CREATED_DESC", "limit": 1}
    (artifact,) = httpx.post(f"{api}/artifacts/filter", json=query, timeout=10).json()
    assert artifact["flow_run_id"] == flow_run["id"]
    figures = "[...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/png'))"
    report = (project / "reports/report.md").read_text()
    answer = report.splitlines()[0].replace("**", "").replace("`", "")  # bold and code, as rendered
    answer_js, title_js = shown_as(answer), shown_as("Retraining after pruning")
    page = open_page(
        f"{api.removesuffix('/api')}/artifacts/artifact/{artifact['id']}",
        tmp_path / "artifact.png",
        ready_js=f"{figures}.length >= 2 && {figures}.every(i => i.complete)",
        evaluate={
            "figures": f"{figures}.length",
            "drawn": f"{figures}.filter(i => i.naturalWidth > 100 && i.naturalHeight > 100).length",
            "broken": "[...document.querySelectorAll('img')].filter(i => i.complete && !i.naturalWidth).length",
            "table": "!!document.querySelector('table')",
            "answer": f"!!{answer_js}",
            "answer_first": f"!!({title_js} && {answer_js}?.compareDocumentPosition({title_js}) & 4)",  # FOLLOWING
        },
        timeout=60,
    )
    assert page.facts["answer"], f"the first line, whole and unbroken, is shown: {answer}"
    assert page.facts["answer_first"], "the answer comes before the title"
    assert page.facts["figures"] == report.count("![") >= 2
    assert page.facts["drawn"] == page.facts["figures"], "every figure decoded and drawn"
    assert page.facts["broken"] == 0
    assert page.facts["table"], "the report's tables render as tables"
    assert [error for error in page.errors if "/favicon.ico " not in error] == []  # the UI has no favicon
