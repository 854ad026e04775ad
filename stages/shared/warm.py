"""Warm stage starts: torch imported once for a whole `dvc repro`, not once per stage.

Every stage is a process of its own, and importing torch is most of what a short stage costs
(README: Performance). `python -m stages.shared.warm_server dvc repro ...` (what `make run` runs) imports
torch and every stage module once, then runs the command with `REWIND_WARM` naming its socket.
A stage started under it (`python -m stages.<name> ...`, as dvc.yaml runs them) hands its
arguments, working directory, environment and standard streams to that server at once, before
torch loads (`delegate` here, called from `stages/__init__.py`); the server
(stages/shared/warm_server.py) forks a child that has torch
already and runs the stage's module as `__main__` there, in that directory and environment, on
those streams; the stage's exit status comes back to the process DVC started. So DVC, its locks,
its dvc.lock and the stage's outputs are exactly as without it; only the import is skipped.

What could make a warm child differ from a cold start is refused, and the stage then simply starts
cold: code edited since the server started (it checks the stages', rewind's and plugins' files at
every request), another working tree, a server gone. The pins of `stages.shared.kernels` are the
server's too, so results are the same bits (tested). Signals the stage process gets reach the
child; if the stage process is killed outright, the child notices its connection close and
kills itself, keeping its saved progress as any killed stage does. The server lives exactly as
long as its command: nothing is left running after it.
"""

import contextlib
import os
import re
import signal
import sys

WARM_ENV = "REWIND_WARM"
STAGE_MODULE = re.compile(r"^stages\.(?!shared\b)[a-z_]+$")
MESSAGE = 1 << 20  # the largest request (environment and arguments) or reply


def delegate() -> None:
    """In a stage process: have the warm server run this stage, and exit with its status; return
    (start cold) when there is no server, the process runs no stage module, or the server declines."""
    path, argv = os.environ.get(WARM_ENV), sys.orig_argv
    if not path or len(argv) < 3 or argv[1] != "-m" or not STAGE_MODULE.match(argv[2]):
        return
    import json  # here, not above: every stage imports this module, and only warm ones need these
    import socket

    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        connection.connect(path)
        request = {"argv": argv[2:], "cwd": os.getcwd(), "env": dict(os.environ)}
        socket.send_fds(connection, [json.dumps(request).encode()], [0, 1, 2])
        reply = json.loads(connection.recv(MESSAGE) or b"{}")
    except (OSError, ValueError):
        return
    if "pid" not in reply:  # declined: stale code, another tree
        return
    child = reply["pid"]
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda received, _frame: _forward(child, received))
    try:
        final = json.loads(connection.recv(MESSAGE) or b"{}")
    except (OSError, ValueError):
        final = {}
    if "exit" not in final:
        print(f"error: the warm stage server lost this stage (pid {child}); run it again", file=sys.stderr)
        os._exit(1)
    os._exit(final["exit"])


def _forward(child: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, number)
