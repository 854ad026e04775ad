"""The one way the flow runs DVC: a stage, the status, the metrics, any other command.

Every command is DVC's own CLI in a fresh process in the project, `python -m pipeline.dvc_cli ARGS`,
which is `dvc --wait-for-lock ARGS` with one knob changed: a waiting DVC retries its repository
lock every POLL_SECONDS instead of every 0.5 s. Stages of parallel branches each hold that lock
briefly before and after their command, so they often wait for each other, and at 0.5 s a step
a waiting stage leaves its core idle longer than the holder needed the lock. The knob is checked
at start: a DVC that no longer has it stops with one line instead of silently polling slowly.

Nothing here imports Prefect: a machine that runs one stage for a coordinator (the several-machine
path) can run it the same way, with `repro`. (Not named dvc.py: Prefect loads a deployment's
entrypoint, pipeline/flow.py, with pipeline/ on sys.path, where a dvc.py would stand in for DVC.)
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pipeline import QUIET_ENV, PipelineError
from stages.shared.parallel import WORKERS_ENV

POLL_SECONDS = 0.05
RETRIES_PER_TIMEOUT = 6  # dvc.lock.Lock.lock() waits DEFAULT_TIMEOUT / 6 between its tries

Outcome = Literal["ran", "restored", "up to date"]

# DVC's words for "another process holds what I need"; gone once that process is done.
LOCK_CONTENTION = re.compile(r"is busy, it is being blocked by|Unable to acquire lock|Lock file .* is busy")
# DVC's StageCmdFailedError ends "exited with <code>". A command killed by a signal exits with a
# negative code when the shell execs it (bash), with 128 + the signal when the shell waits for it
# (dash, /bin/sh where $SHELL is unset): SIGKILL is -9 or 137.
EXIT_CODE = re.compile(r"exited with (-?\d+)")
# What DVC prints after every stage it records, advice for someone at a terminal, not news of the
# stage: its `git add dvc.lock` hint, its auto-staging hint, and `dvc repro`'s `dvc push` hint.
HINT = re.compile(
    r"To track the changes with git, run:|\tgit add .*|To enable auto staging, run:|\tdvc config core\.autostage true"
    r"|Use `dvc push` to send your updates to remote storage\."
)


class StageFailed(Exception):
    """The stage's `dvc repro -s` failed; the message names the stage and its first error line,
    `output` holds all DVC printed (for the log)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class TransientStageFailure(StageFailed):
    """A failure that may pass on a retry (lock contention, a killed command)."""


class Reproduced(NamedTuple):
    """What `dvc repro -s` did to a stage, and DVC's output (for the log)."""

    outcome: Outcome
    output: str


def stage_env() -> dict[str, str]:
    """The environment of DVC and its stages: this interpreter's bin first on PATH (dvc.yaml runs
    `python`), telemetry off."""
    env = dict(os.environ) | QUIET_ENV
    bin_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def parallel_stage_env() -> dict[str, str]:
    """stage_env for stages that run side by side: OpenMP threads that wait sleep instead of spinning.

    Two stages each with a thread per core oversubscribe the cores; spinning threads then slow
    training many-fold. The wait policy changes no result (checked bit for bit); the thread count
    would, so it stays as under `dvc repro`.
    """
    return {"OMP_WAIT_POLICY": "PASSIVE"} | stage_env()


def run(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`dvc --wait-for-lock *args` in `project` (see the module docstring), its output captured."""
    command = [sys.executable, "-m", "pipeline.dvc_cli", *args]
    return subprocess.run(command, cwd=project, env=env or stage_env(), capture_output=True, text=True, check=False)


def streamed(
    project: Path, *args: str, on_line: Callable[[str], None], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`run`, with stdout and stderr as one stream handed to `on_line` line by line as DVC and the
    stage print them, so a long stage can be watched while it runs: every line that says
    something (`says_something`). All of it is kept too (in `stdout`, in the order printed), to
    tell what happened once it ends."""
    command = [sys.executable, "-m", "pipeline.dvc_cli", *args]
    lines = []
    with subprocess.Popen(
        command, cwd=project, env=env or stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            lines.append(line)
            if says_something(printed := line.rstrip("\n")):
                on_line(printed)
    return subprocess.CompletedProcess(command, process.returncode, "".join(lines), "")


def says_something(line: str) -> bool:
    """Whether a line DVC or a stage printed is worth a log line: not blank, not one of DVC's hints."""
    return bool(line.strip()) and not HINT.fullmatch(line)


def output(project: Path, *args: str) -> str:
    """The stdout of a DVC command that must succeed; a failure is one PipelineError line with DVC's first error."""
    result = run(project, *args)
    if result.returncode != 0:
        errors = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("ERROR")]
        raise PipelineError(f"dvc {' '.join(args)}: {(errors or ['failed'])[0]}")
    return result.stdout


def json_output(project: Path, *args: str) -> Any:
    """A `--json` command's answer as data (DVC prints nothing for an empty answer)."""
    return json.loads(output(project, *args, "--json") or "{}")


def status(project: Path) -> set[str]:
    """The stages `dvc status` reports changed now."""
    return set(json_output(project, "status"))


def metrics(project: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`dvc metrics show` and `dvc metrics diff` (the workspace against HEAD), as data."""
    return json_output(project, "metrics", "show"), json_output(project, "metrics", "diff")


def repro(project: Path, stage: str, on_line: Callable[[str], None] = lambda _: None) -> Reproduced:
    """`dvc repro -s stage`: what DVC did, or StageFailed (TransientStageFailure when a retry may
    pass). Each line DVC and the stage print goes to `on_line` as it comes (see `streamed`)."""
    # one training run at a time in each stage: the flow runs stages side by side instead
    env = parallel_stage_env() | {WORKERS_ENV: "1"}
    result = streamed(project, "repro", "--single-item", stage, on_line=on_line, env=env)
    if result.returncode != 0:
        raise failure_of(stage, result)
    return Reproduced(outcome_of(stage, result.stdout), _printed(result))


def outcome_of(stage: str, stdout: str) -> Outcome:
    """DVC's verdict from its output: ran the command, restored from the run-cache, or nothing to do."""
    if f"Stage '{stage}' is cached - skipping run" in stdout:
        return "restored"
    if f"Running stage '{stage}'" in stdout:
        return "ran"
    return "up to date"


def failure_of(stage: str, result: subprocess.CompletedProcess) -> StageFailed:
    """The exception for a failed `dvc repro -s`: one line with the most telling error, typed by cause."""
    text = f"{result.stdout}\n{result.stderr}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [line for line in lines if line.startswith("error:")]  # a stage's one-line RewindError
    dvc_errors = [line for line in lines if line.startswith("ERROR:")]
    reason = (own or dvc_errors or lines or [f"exit status {result.returncode}"])[0]
    message = f"stage {stage!r} failed: {reason}"
    if LOCK_CONTENTION.search(text) or killed_by_signal(text) or result.returncode < 0:
        return TransientStageFailure(message, _printed(result))
    return StageFailed(message, _printed(result))


def killed_by_signal(text: str) -> bool:
    """Whether DVC reports the stage's command as ended by a signal, through whichever shell ran it."""
    return any(code < 0 or 128 < code < 160 for code in map(int, EXIT_CODE.findall(text)))


def _printed(result: subprocess.CompletedProcess) -> str:
    return "\n".join(part.rstrip() for part in (result.stdout, result.stderr) if part.strip())


def poll_faster() -> None:
    """Make a waiting DVC retry its lock every POLL_SECONDS; fail loudly if DVC's knob moved."""
    import dvc.lock

    if not isinstance(getattr(dvc.lock, "DEFAULT_TIMEOUT", None), int | float):
        raise SystemExit("error: dvc.lock.DEFAULT_TIMEOUT is gone: check pipeline/dvc_cli.py against this DVC")
    dvc.lock.DEFAULT_TIMEOUT = POLL_SECONDS * RETRIES_PER_TIMEOUT


def main(argv: list[str]) -> int:
    """DVC's CLI (`dvc --wait-for-lock *argv`), polling its lock every POLL_SECONDS."""
    from dvc.cli import main as dvc_main

    poll_faster()
    return dvc_main(["--wait-for-lock", *argv])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
