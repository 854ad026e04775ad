"""The warm stage server (stages/shared/warm.py says why and how): `python -m
stages.shared.warm_server COMMAND ...` imports torch and the stage modules once, runs COMMAND with
`REWIND_WARM` naming its socket, and forks a child per stage that asks, until COMMAND exits."""

import contextlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from stages.shared.warm import MESSAGE, WARM_ENV

CODE = ("stages", "rewind", "plugins")  # what a warm child runs from the server's memory


def code_fingerprint(root: Path) -> tuple:
    """Every code file a warm child would run from memory, with its size and modification time."""
    files = (p for folder in CODE for p in sorted((root / folder).rglob("*.py")))
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def serve(command: list[str]) -> int:
    """Run `command` with a warm server for its stages; its exit status."""
    root = Path.cwd()
    _preload()
    fingerprint = code_fingerprint(root)
    with _listening() as (listener, path):
        env = dict(os.environ) | {WARM_ENV: path}
        children: set[int] = set()
        with _ignoring(signal.SIGINT):  # Ctrl-C reaches the command itself, which decides what to do
            process = subprocess.Popen(command, env=env)
            while process.poll() is None:
                _reap(children)
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                with connection:
                    children |= _answer(connection, root, fingerprint)
            _reap(children)
            return process.returncode


def _preload() -> None:
    """Import torch and every stage module (and so what they import at the top) once, here. No
    tensor is made: a forked child then starts torch's thread pools itself, as a cold stage does."""
    import torch  # noqa: F401

    for module in sorted(p.stem for p in Path("stages").glob("*.py") if p.stem != "__init__"):
        __import__(f"stages.{module}")


@contextlib.contextmanager
def _listening() -> Iterator[tuple[socket.socket, str]]:
    folder = tempfile.mkdtemp(prefix="rewind-warm-")
    path = os.path.join(folder, "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        listener.bind(path)
        listener.listen(16)
        listener.settimeout(0.05)
        yield listener, path
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
            os.rmdir(folder)


@contextlib.contextmanager
def _ignoring(number: int) -> Iterator[None]:
    previous = signal.signal(number, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(number, previous)


def _answer(connection: socket.socket, root: Path, fingerprint: tuple) -> set[int]:
    """Fork a child for one stage request (its pid), or decline it (the stage starts cold)."""
    try:
        data, fds, _, _ = socket.recv_fds(connection, MESSAGE, 3)
        request = json.loads(data)
    except (OSError, ValueError):
        return set()
    try:
        if Path(request["cwd"]) != root or code_fingerprint(root) != fingerprint or len(fds) != 3:
            connection.send(json.dumps({"declined": True}).encode())
            return set()
        pid = os.fork()
        if pid == 0:
            _child(connection, request, fds)
        return {pid}
    finally:
        for fd in fds:
            os.close(fd)


def _child(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the stage process the request describes, run the stage, report."""
    code = 1
    try:
        os.setpgid(0, 0)  # signals come from the stage process that asked (it forwards them), not the terminal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        module, *arguments = request["argv"]
        connection.send(json.dumps({"pid": os.getpid()}).encode())
        threading.Thread(target=_die_with_caller, args=(connection,), daemon=True).start()
        code = _run(module, arguments)
    finally:
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
            connection.send(json.dumps({"exit": code}).encode())
        os._exit(code)


def _run(module: str, arguments: list[str]) -> int:
    """The stage module as `python -m` runs it; its exit status."""
    sys.modules.pop(module, None)  # run it afresh as __main__, as a cold start would
    sys.argv = [module, *arguments]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def _die_with_caller(connection: socket.socket) -> None:
    """The stage process that asked is gone (killed outright): so is this child."""
    with contextlib.suppress(OSError):
        connection.recv(MESSAGE)
    os.kill(os.getpid(), signal.SIGKILL)


def _reap(children: set[int]) -> None:
    """Collect the stage children that ended (never the command: its status is the server's)."""
    for pid in list(children):
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                children.discard(pid)
        except ChildProcessError:
            children.discard(pid)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m stages.shared.warm_server COMMAND [ARGS...]  (e.g. dvc repro)", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(serve(sys.argv[1:]))
