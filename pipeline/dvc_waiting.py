"""`python -m pipeline.dvc_waiting ARGS`: DVC's own CLI as `dvc --wait-for-lock ARGS`, polling the
repository lock every 50 ms instead of every 0.5 s.

A waiting DVC retries its repository lock every `dvc.lock.DEFAULT_TIMEOUT / 6` seconds (0.5 s).
Stages of parallel flow branches each hold that lock for a few tenths of a second before and
after their command, so they wait for each other often, and at 0.5 s a step a waiting stage
leaves its core idle longer than the holder needed it: on the default config the flow took
128.4 s with DVC's polling and 117.4 s with this one (`make bench-flow`). Nothing else of DVC
changes: it still decides what is stale, runs the command and records dvc.lock.
"""

import sys

import dvc.lock
from dvc.cli import main

POLL_SECONDS = 0.05
RETRIES_PER_TIMEOUT = 6  # dvc.lock.Lock.lock(): delay = DEFAULT_TIMEOUT / 6


def poll_faster() -> None:
    """Make a waiting DVC retry its lock every POLL_SECONDS; fail loudly if DVC's knob moved."""
    if not isinstance(getattr(dvc.lock, "DEFAULT_TIMEOUT", None), int | float):
        raise SystemExit("error: dvc.lock.DEFAULT_TIMEOUT is gone: check pipeline/dvc_waiting.py against this DVC")
    dvc.lock.DEFAULT_TIMEOUT = POLL_SECONDS * RETRIES_PER_TIMEOUT


if __name__ == "__main__":
    poll_faster()
    sys.exit(main(["--wait-for-lock", *sys.argv[1:]]))
