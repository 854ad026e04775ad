"""`python -m pipeline.serve` (`make prefect-up`): a local Prefect server, the deployment, a worker.

It starts `prefect server start` on 127.0.0.1 (SQLite under PREFECT_HOME, ~/.prefect by
default), creates the `process` work pool, registers the deployments of prefect.yaml from the
project root (`prefect deploy --all`) and runs a worker in the foreground. The cron schedule
in prefect.yaml then starts the flow nightly; `prefect deployment run rewind/nightly` starts it
now. It also creates the automation `rewind-run-failed`, which fires when a run of the deployment
fails or crashes and sends a notification through a Prefect notification block: a webhook it
creates for `--notify-url`, or a block of yours named by `--notify-block` (Slack, e-mail, …).
Ctrl-C stops the worker and the server, even when started with SIGINT ignored (`make … &` in a
script). Telemetry is off throughout.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pipeline import QUIET_ENV, PipelineError

HOST = "127.0.0.1"
DEFAULT_PORT = 4200
POOL = "rewind-process"
DEPLOYMENT = "rewind/nightly"
AUTOMATION = "rewind-run-failed"
WEBHOOK_BLOCK = "rewind-failure-webhook"
FAILED_STATES = ("Failed", "Crashed", "TimedOut")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def prefect_env(api_url: str, home: Path | None = None) -> dict[str, str]:
    """The environment of every Prefect command here: this server, this venv first on PATH, no telemetry."""
    env = dict(os.environ) | QUIET_ENV
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(PREFECT_API_URL=api_url, PREFECT_SERVER_API_HOST=HOST)
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


def prefect(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    """Run a `prefect` CLI command; a failure is one PipelineError line with its last output line."""
    command = [sys.executable, "-m", "prefect", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()] or ["failed"]
        raise PipelineError(f"prefect {' '.join(args)}: {lines[-1].strip()}")
    return result.stdout


@contextmanager
def local_server(port: int, home: Path | None, cwd: Path, log: Path | None = None) -> Iterator[dict[str, str]]:
    """A `prefect server start` on 127.0.0.1:`port`, healthy; yields its environment, stops it on exit."""
    api_url = f"http://{HOST}:{port}/api"
    env = prefect_env(api_url, home)
    output = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops its children too
    )
    try:
        wait_healthy(api_url, server)
        yield env
    finally:
        stop(server)
        if log:
            output.close()


def wait_healthy(api_url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    """Block until the server answers /health; PipelineError if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise PipelineError(f"prefect server exited with status {server.returncode} before it was healthy")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise PipelineError(f"prefect server at {api_url} not healthy after {timeout:.0f} s")


def stop(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def register(project: Path, env: dict[str, str]) -> None:
    """Create the process work pool (if missing) and deploy prefect.yaml's deployments from `project`."""
    try:
        prefect("work-pool", "inspect", POOL, env=env, cwd=project)
    except PipelineError:
        prefect("work-pool", "create", POOL, "--type", "process", env=env, cwd=project)
    prefect("deploy", "--all", "--no-prompt", env=env, cwd=project)


def notify_on_failure(project: Path, env: dict[str, str], notify_url: str | None, notify_block: str | None) -> str:
    """Create (or update) the automation that fires when a run of the deployment ends in a failed
    state; returns what it does, in words. The action sends a notification through `notify_block`
    ("type/name" of an existing notification block), through a webhook block made for
    `notify_url`, or, with neither, does nothing beyond recording the automation's event in the UI.
    """
    from prefect.automations import Automation, EventTrigger, Posture
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.events.actions import DoNothing, SendNotification
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deployment = json.loads(prefect("deployment", "inspect", DEPLOYMENT, "--output", "json", env=env, cwd=project))
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        if notify_url:
            block = CustomWebhookNotificationBlock(
                name="rewind", url=notify_url, json_data={"text": "{{subject}}\n{{body}}"}, allow_private_urls=True
            )
            block_id, told = block.save(WEBHOOK_BLOCK, overwrite=True), f"POST to {notify_url}"
        elif notify_block:
            block_type, _, name = notify_block.partition("/")
            try:
                with get_client(sync_client=True) as client:
                    block_id = client.read_block_document_by_name(name, block_type).id
            except ObjectNotFound:
                raise PipelineError(f"--notify-block {notify_block}: no such block (expected type/name)") from None
            told = f"notification block {notify_block}"
        else:
            block_id, told = None, "an event in the UI only (no --notify-url or --notify-block)"
        automation = Automation(
            name=AUTOMATION,
            description=f"A run of {DEPLOYMENT} failed: {told}",
            trigger=EventTrigger(
                expect={f"prefect.flow-run.{state}" for state in FAILED_STATES},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related={"prefect.resource.id": f"prefect.deployment.{deployment['id']}"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject=f"rewind: run {{{{ flow_run.name }}}} of {DEPLOYMENT} {{{{ flow_run.state.name }}}}",
                    body="{{ flow_run.state.message }}\n{{ flow_run|ui_url }}",
                )
                if block_id
                else DoNothing()
            ],
        )
        try:
            automation.id = Automation.read(name=AUTOMATION).id
        except ValueError:  # none yet
            automation.create()
        else:
            automation.update()
    return told


def worker_command(run_once: bool = False) -> list[str]:
    """The worker for the pool; `--run-once` executes what is due now and exits (tests)."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"]
    return [*command, "--run-once"] if run_once else command


def run_worker(project: Path, env: dict[str, str]) -> int:
    """The worker in the foreground until it exits or Ctrl-C, which it gets too (same process group)."""
    worker = subprocess.Popen(worker_command(), cwd=project, env=env)
    try:
        return worker.wait()
    except KeyboardInterrupt:
        try:
            worker.wait(timeout=5)  # Prefect's worker stops on the SIGINT it got beside this one
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        return 0


def main(argv: list[str] | None = None) -> int:
    """Server, deployment, worker in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    parser.add_argument("--project", type=Path, default=Path("."), help="the project folder (default: here)")
    parser.add_argument("--server-log", type=Path, help="append the server's output to this file")
    parser.add_argument("--notify-url", default=os.environ.get("REWIND_NOTIFY_URL"), help="webhook told of failed runs")
    parser.add_argument("--notify-block", help="notification block told of failed runs, as type/name")
    args = parser.parse_args(argv)
    # Ctrl-C must stop everything even when this started with SIGINT ignored (a shell starting
    # `make prefect-up &` without job control does that); TERM and HUP go through `finally` too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, lambda number, _: sys.exit(128 + number))
    project = args.project.resolve()
    home = Path(os.environ["PREFECT_HOME"]) if "PREFECT_HOME" in os.environ else None
    try:
        with local_server(args.port, home, project, args.server_log) as env:
            register(project, env)
            told = notify_on_failure(project, env, args.notify_url, args.notify_block)
            print(f"Prefect UI: http://{HOST}:{args.port}  deployment {DEPLOYMENT}, pool {POOL}", flush=True)
            print(f"On failure: automation {AUTOMATION}: {told}")
            print(f"Run now:    PREFECT_API_URL={env['PREFECT_API_URL']} prefect deployment run {DEPLOYMENT}")
            sys.stdout.flush()
            return run_worker(project, env)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
