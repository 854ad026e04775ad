"""Shared fixtures: a tiny copy of the project in a temporary git repo (bench.sandbox), run with real dvc."""

import fcntl
import os
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import yaml

from bench.sandbox import GIT_IDENTITY, make_project, tiny_params
from pipeline.dvc_cli import stage_env

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)
__all__ = [
    "ROOT",
    "VENV_BIN",
    "copy_of",
    "dvc",
    "make_project",
    "on_terminal",
    "params_with",
    "project_env",
    "run",
    "tiny_params",
]


def params_with(tmp_path: Path, **train):
    """tiny_params with these `train` keys changed, written under `tmp_path` and validated as a stage would."""
    from stages.shared.params import load_params

    raw = tiny_params()
    raw["train"].update(train)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return load_params(tmp_path / "params.yaml")


def project_env() -> dict[str, str]:
    """The environment stage commands need: this venv's python first on PATH, telemetry off, a git identity."""
    return stage_env() | GIT_IDENTITY


def run(
    cmd: list[str], cwd: Path, check: bool = True, timeout: float | None = None, **popen
) -> subprocess.CompletedProcess:
    """`cmd` in `cwd` with the project's environment; a hang past `timeout` seconds fails the test."""
    result = subprocess.run(cmd, cwd=cwd, env=project_env(), capture_output=True, text=True, timeout=timeout, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, check)


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project", tiny_params())


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> tuple[Path, str]:
    """The tiny project after one `dvc repro`, results committed, with DVC's output of that run.
    Reproducing takes a minute here: it is built once per test run, by whichever pytest-xdist
    worker needs it first, under a lock the others wait on; tests copy it (`copy_of`)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the run's folder
    path, output = shared / "reproduced" / "project", shared / "reproduced" / "repro-output.txt"
    with open(shared / "reproduced.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not output.exists():
            make_project(path, tiny_params())
            first = dvc("repro", cwd=path)
            run(["git", "add", "-A"], path)
            run(["git", "commit", "-qm", "results"], path)
            output.write_text(first.stdout)
    return path, output.read_text()


def copy_of(project: Path, destination: Path) -> Path:
    """A copy of a project: its git repository, workspace and DVC cache (a clone would lack the cache)."""
    shutil.copytree(project, destination, symlinks=True)
    return destination


def children_of(pid: int) -> list[int]:
    """The pids of a process's children, from /proc."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """A process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def on_terminal(cmd: list[str], cwd: Path, columns: int = 100) -> str:
    """Run `cmd` with a pseudo-terminal (`columns` wide) as its stdin, stdout and stderr; all it printed."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = project_env() | {"COLUMNS": str(columns), "LINES": "24"}  # as a terminal of that size sets them
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process ended and the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")
