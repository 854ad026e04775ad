"""A stage's training runs on every free core, with the same bits as one after the other.

A stage's runs (its seeds; a sweep's budgets, sparsities and seeds) are independent, each on
`train.threads` threads, so several can train side by side without changing a bit. Each run is
trained first in a forked child, which leaves its finished progress in the run's scratch folder
exactly as a run killed after its last epoch would (stages/shared/resumable.py). The stage then
goes over its runs one by one as it always does, finds each one trained, and only loads it. So a
run has one code path whether it trained here or in a child, and a stage killed anywhere resumes
as before: the children die with the stage (PR_SET_PDEATHSIG) and keep their last epoch.

How many at once is the machine's business, not the result's, so it is no param: as many runs as
the usable cores hold at `train.threads` each (single-threaded runs: one more than the cores, so
no core idles while a run forks, loads or reports), one on a GPU (a forked child cannot use CUDA,
and runs would share its memory), or `REWIND_WORKERS` (the Prefect flow sets 1: it runs stages
side by side instead).
"""

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rewind import RewindError

WORKERS_ENV = "REWIND_WORKERS"
PR_SET_PDEATHSIG = 1
EXIT_FAILED, EXIT_REWIND_ERROR, EXIT_INTERRUPTED = 1, 2, 130
REPORT_CHARS = 4000  # a child's report stays far below a pipe's capacity: it never blocks before exiting
T = TypeVar("T")
_slot = 0  # which of the runs training at once this process trains: 0 in the stage itself


def slot() -> int:
    """Which of the runs training at once this process trains (0 in the stage itself): the
    terminal row its progress bar keeps, below those of the others."""
    return _slot


@dataclass(frozen=True)
class Run(Generic[T]):
    """One training run of a stage: `train` trains it (resumably) and returns what the stage keeps;
    `label` names it in errors ("lrr round 3 seed 1")."""

    label: str
    train: Callable[[], T]


def worker_count(threads: int | None, device_type: str, runs: int) -> int:
    """How many runs train at once: `REWIND_WORKERS` if set, else one per `threads` usable cores
    (one more than the cores for single-threaded runs, one when `threads` is null: a run then takes
    every core), one on a GPU; never more than `runs`."""
    forced = os.environ.get(WORKERS_ENV, "").strip()
    if forced:
        if not forced.isdigit() or int(forced) < 1:
            raise RewindError(f"{WORKERS_ENV}: {forced!r} is not a worker count (1, 2, …)")
        wanted = int(forced)
    elif threads is None:
        wanted = 1
    elif threads == 1:  # one more than the cores: a core whose run is starting or ending takes the next
        wanted = len(os.sched_getaffinity(0)) + 1
    else:
        wanted = max(1, len(os.sched_getaffinity(0)) // threads)
    return 1 if device_type != "cpu" else max(1, min(wanted, runs))


def run_all(runs: Sequence[Run[T]], workers: int) -> tuple[list[T], float]:
    """Every run's result, in order, and the seconds spent training them (summed over runs, wherever
    each trained). With `workers` > 1 the runs train in forked children first (see the module)."""
    trained_elsewhere = _train_in_children(runs, workers) if workers > 1 and len(runs) > 1 else {}
    results, seconds = [], 0.0
    for index, run in enumerate(runs):
        started = time.perf_counter()
        with _quiet(index in trained_elsewhere):  # its "resuming after its last step" line says nothing new
            results.append(run.train())
        seconds += trained_elsewhere.get(index, time.perf_counter() - started)
    return results, seconds


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """The stage's info lines held back while it only loads a run a child trained."""
    logger = logging.getLogger("rewind")
    level = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _train_in_children(runs: Sequence[Run[T]], workers: int) -> dict[int, float]:
    """Train each run in a child of its own, `workers` at a time; their training seconds by index.

    A failure is raised here as the run itself would have raised it, and as one run after the
    other would have met it: runs after the failed one are stopped (their progress kept), runs
    before it finish, and the first in order that failed is the one raised."""
    pending, running, seconds = list(enumerate(runs)), {}, {}
    failed: tuple[int, str, int, str] | None = None  # index, label, exit code, report
    try:
        while pending or running:
            while pending and len(running) < workers and failed is None:
                index, run = pending.pop(0)
                slot = min(set(range(workers)) - {child.slot for child in running.values()})
                child = _fork(index, run, slot)
                running[child.pid] = child
            if not running:
                break
            pid, status = os.wait()
            if pid not in running:
                continue
            child = running.pop(pid)
            code, report = os.waitstatus_to_exitcode(status), child.report()
            if code == 0:
                seconds[child.index] = float(report)
            elif failed is None or child.index < failed[0]:
                failed = (child.index, child.run.label, code, report)
                _stop({pid: later for pid, later in running.items() if later.index > child.index}, running)
    finally:
        _stop(running, running)
    if failed is not None:
        _raise_failure(*failed[1:])
    return seconds


@dataclass(frozen=True)
class _Child:
    """A run training in a child process, which reports through the pipe `reports` when it ends."""

    pid: int
    index: int
    run: Run
    slot: int  # the terminal row of its progress bar
    reports: int

    def report(self) -> str:
        """What the child wrote before it exited: its training seconds, or its error."""
        chunks = []
        while chunk := os.read(self.reports, 65536):
            chunks.append(chunk)
        os.close(self.reports)
        return b"".join(chunks).decode(errors="replace")


def _fork(index: int, run: Run, slot: int) -> _Child:
    reports, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child never returns: it trains the run, reports, and exits
        os.close(reports)
        _child(run, write, parent, slot)
    os.close(write)
    return _Child(pid, index, run, slot, reports)


def _child(run: Run, report: int, parent: int, slot: int) -> None:
    """Train `run`, write its seconds (or its error) to `report`, exit. Nothing may escape into the
    parent's stack: under DVC its error handler would restore outputs a second time."""
    code, message = EXIT_FAILED, ""
    try:
        _die_with(parent)
        global _slot
        _slot = slot
        started = time.perf_counter()
        run.train()
        code, message = 0, repr(time.perf_counter() - started)
    except RewindError as err:
        code, message = EXIT_REWIND_ERROR, str(err)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            os.write(report, message[:REPORT_CHARS].encode())  # the parent reads it after the exit
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _die_with(parent: int) -> None:
    """Have the kernel kill this child when the stage process dies, SIGKILL included (Linux)."""
    with contextlib.suppress(OSError, AttributeError):  # no prctl: not Linux
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the stage died before the line above took effect
        os._exit(EXIT_INTERRUPTED)


def _raise_failure(label: str, code: int, report: str) -> None:
    if code == EXIT_REWIND_ERROR:
        raise RewindError(report)
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if code < 0:
        raise RewindError(f"{label}: its training process was killed by signal {-code}; run the stage again to resume")
    raise RuntimeError(f"{label}: its training process failed (exit {code}); its traceback is above")


def _stop(children: dict[int, _Child], running: dict[int, _Child]) -> None:
    """Stop and reap `children` (runs after a failed one, or all when the stage is interrupted) and
    take them out of `running`: each keeps the progress of its last finished epoch."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid, child in list(children.items()):
        os.waitpid(pid, 0)
        os.close(child.reports)
        running.pop(pid, None)
