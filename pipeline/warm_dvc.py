"""A warm DVC: `dvc --wait-for-lock ARGS` run in forks of one process that has imported DVC.

Every flow stage is one `dvc repro --single-item <stage>`. Started as a fresh process, DVC spends
about 0.2 s of its 0.4 s (for a stage with nothing to do) importing the modules `repro` imports
lazily; 80 stages on the default config spend 16 s of CPU on that, on the cores the stages need.
Here a server process (`python -m pipeline.warm_dvc SOCKET`) imports them once, then forks a
child per command. A child is a fresh DVC in all that matters (its own Repo, locks, logger and
output; the environment and working directory the server was started with), only started in
milliseconds. The child runs in a grandchild of the server, so that the server's reply carries
the exit status exactly as `subprocess` reports it: negative for a signal.

DVC itself is unchanged but for one knob: a waiting DVC retries its repository lock every 50 ms
instead of every 0.5 s. Stages of parallel flow branches each hold that lock for a few tenths of
a second before and after their command, so they wait for each other often, and at 0.5 s a step
a waiting stage leaves its core idle longer than the holder needed it (on the default config the
flow took 128.4 s with DVC's polling and 117.4 s with this one).
"""

import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import dvc.lock
from dvc.cli import main as dvc_main

from pipeline import PipelineError, dvc_output

POLL_SECONDS = 0.05
RETRIES_PER_TIMEOUT = 6  # dvc.lock.Lock.lock(): delay = DEFAULT_TIMEOUT / 6
START_TIMEOUT_S = 60.0
# What `dvc repro` imports lazily, found with `python -X importtime`. A name a later DVC no longer
# has costs a little speed, never correctness, so a failed import is skipped.
PRELOAD = (
    "dvc.cli.parser", "dvc.repo", "dvc.repo.reproduce", "dvc.repo.index", "dvc.stage", "dvc.stage.cache",
    "dvc.stage.loader", "dvc.dvcfile", "dvc.output", "dvc.dependency", "dvc.rwlock", "dvc.config", "dvc.ui",
    "dvc.scm", "dvc.cachemgr", "dvc.data_cloud", "dvc.parsing", "dvc_data.index", "dvc_data.hashfile.hash",
    "scmrepo.git", "scmrepo.noscm", "dulwich.repo", "dulwich.worktree", "ruamel.yaml", "diskcache",
    "configobj", "pyparsing", "flatten_dict", "platformdirs",
)  # fmt: skip


def poll_faster() -> None:
    """Make a waiting DVC retry its lock every POLL_SECONDS; fail loudly if DVC's knob moved."""
    if not isinstance(getattr(dvc.lock, "DEFAULT_TIMEOUT", None), int | float):
        raise SystemExit("error: dvc.lock.DEFAULT_TIMEOUT is gone: check pipeline/warm_dvc.py against this DVC")
    dvc.lock.DEFAULT_TIMEOUT = POLL_SECONDS * RETRIES_PER_TIMEOUT


class WarmDvc:
    """The client of a running server: `run(argv)` is `dvc --wait-for-lock *argv` in its project."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        """DVC's exit status and output, as `subprocess.run(..., capture_output=True, text=True)` gives them."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(self.socket_path)
            connection.sendall(json.dumps({"argv": argv}).encode() + b"\n")
            reply = connection.makefile("rb").readline()
        if not reply:  # the server or its child died before replying: like a killed process
            return subprocess.CompletedProcess(argv, -signal.SIGKILL, "", "warm DVC server closed the connection")
        result = json.loads(reply)
        return subprocess.CompletedProcess(argv, result["returncode"], result["stdout"], result["stderr"])

    def output(self, argv: list[str]) -> str:
        """The stdout of a DVC command that must succeed; a failure is one PipelineError line."""
        return dvc_output(argv, self.run(argv))


@contextlib.contextmanager
def warm_dvc(project: Path, env: dict[str, str]) -> Iterator[WarmDvc]:
    """A server for DVC commands in `project` with `env`, for as long as the block runs."""
    folder = Path(tempfile.mkdtemp(prefix="rewind-dvc-"))  # short: a socket path has at most 107 bytes
    socket_path = str(folder / "dvc.sock")
    log = folder / "server.log"  # a file, not a pipe: nobody reads it while the server runs
    with log.open("w") as errors:
        server = subprocess.Popen(
            [sys.executable, "-m", "pipeline.warm_dvc", socket_path],
            cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True,
        )  # fmt: skip
    try:
        if server.stdout.readline().strip() != "ready":  # blocks until bound, or "" if it died
            server.wait()
            raise PipelineError(f"the warm DVC server did not start: {log.read_text().strip()[-500:]}")
        yield WarmDvc(socket_path)
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)


class _Server(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    """Forks a handler per connection; stops once the process that started it is gone."""

    block_on_close = False

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path, _Handler)
        self.owner = os.getppid()

    def service_actions(self) -> None:
        super().service_actions()  # reaps finished handlers
        if os.getppid() != self.owner:  # orphaned (the flow was killed): don't linger
            raise SystemExit(0)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        argv = json.loads(self.rfile.readline())["argv"]
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            child = os.fork()
            if child == 0:
                self.server.socket.close()
                self.request.close()
                _run_dvc(argv, stdout, stderr)
            _, status = os.waitpid(child, 0)
            reply = {"returncode": os.waitstatus_to_exitcode(status), "stdout": _text(stdout), "stderr": _text(stderr)}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


def _run_dvc(argv: list[str], stdout: IO[bytes], stderr: IO[bytes]) -> None:
    """In a forked child: DVC's CLI with this process's output going to the two files; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.dup2(stdout.fileno(), 1)
        os.dup2(stderr.fileno(), 2)
        code = dvc_main(["--wait-for-lock", *argv])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except BaseException as error:  # a forked child must end in os._exit below, whatever happens
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _text(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def serve(socket_path: str) -> None:
    """Import what DVC needs, bind `socket_path`, say "ready" on stdout, then serve until terminated."""
    poll_faster()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with _Server(socket_path) as server:
        print("ready", flush=True)
        server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m pipeline.warm_dvc SOCKET")
    serve(sys.argv[1])
