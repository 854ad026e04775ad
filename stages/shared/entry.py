"""A stage's entry point: arguments, params, one run at a time, one-line errors, nothing lost.

DVC deletes a stage's cached outputs before it runs the stage's command, so a stage that fails
(bad params, a damaged input, a diverged run, Ctrl-C) would cost the results of its last good
run. When DVC runs the stage (it sets `DVC_STAGE`), a failure therefore puts back the outputs
that dvc.lock records, from DVC's cache, through DVC's public `DVCFileSystem`: afterwards the
workspace holds what dvc.lock says, and `dvc status` tells the truth. (The stages' uncached
outputs are `persist` in dvc.yaml, so DVC never deletes them.) Run by hand, a stage writes its
outputs only once all its work has succeeded, so a failure leaves the previous ones in place.
"""

import argparse
import fcntl
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from rewind import RewindError
from stages.shared.params import Params, load_params

log = logging.getLogger("rewind")
Body = Callable[[Params, argparse.Namespace], None]
LOCKS = Path(".rewind/locks")
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def run_stage(body: Body, description: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Parse arguments, validate params.yaml and run `body`, one run of a stage at a time.

    A RewindError or OSError becomes one `error:` line and exit 2, Ctrl-C exit 130; under DVC any
    failure first restores the outputs DVC deleted. Bugs keep their traceback.
    """
    parser = argparse.ArgumentParser(description=description)
    if arguments is not None:
        arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        with one_run_at_a_time(run_name(parser.prog, args)):
            body(load_params(), args)
    except (Exception, KeyboardInterrupt) as err:
        if under_dvc():
            restore_outputs(os.environ["DVC_STAGE"])
        message = failure_message(err)
        if message is None:
            raise
        print("error: " + message.replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)  # one line, always
        raise SystemExit(EXIT_INTERRUPTED if isinstance(err, KeyboardInterrupt) else EXIT_ERROR) from None


def under_dvc() -> bool:
    """Whether DVC runs this stage: it deleted the stage's cached outputs before, and a failure
    puts them back (`restore_outputs`), so the stage may write into them as it goes."""
    return bool(os.environ.get("DVC_STAGE"))


def failure_message(err: BaseException) -> str | None:
    """One line for failures the user can act on; None for bugs, which keep their traceback."""
    if isinstance(err, RewindError):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return "interrupted; training progress is kept in .rewind/scratch: run the stage again to resume"
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror or err}"
    return None


@contextmanager
def labelled(label: str) -> Iterator[None]:
    """Prefix a RewindError raised inside with `label`, the run it happened in: `dense seed 1: …`."""
    try:
        yield
    except RewindError as err:
        raise RewindError(f"{label}: {err}") from None


def strategy_round_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", required=True, help="a strategy named in params.yaml `compare`")
    parser.add_argument("--round", type=int, required=True, help="a round id from params.yaml `rounds`")


def run_name(program: str, args: argparse.Namespace) -> str:
    """A name for one stage run, from its module and arguments: `retrain-strategy=lrr-round=1`."""
    module = program.removesuffix(".py").rsplit(".", 1)[-1]
    return "-".join([module, *(f"{key}={value}" for key, value in sorted(vars(args).items()))])


@contextmanager
def one_run_at_a_time(name: str) -> Iterator[None]:
    """Hold `.rewind/locks/<name>.lock` while the stage runs: a second run of the same stage (a
    leftover of a killed `dvc repro`, say) would share its scratch progress, so it stops at once,
    naming the process to wait for. The kernel releases the lock when its holder dies."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    with open(LOCKS / f"{name}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RewindError(
                f"{name}: another run of this stage is in progress (pid {holder}); wait for it or stop it, then rerun"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def restore_outputs(stage: str) -> None:
    """Put back the outputs of `stage` that dvc.lock records, from DVC's cache, replacing what is
    there (DVC deleted them before running the stage; a failed run may have written some anew)."""
    try:
        recorded = yaml.safe_load(Path("dvc.lock").read_text())["stages"][stage]["outs"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return  # the stage never completed here: there is nothing to put back
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(".")
    for out in recorded:
        path = Path(out["path"])
        staging = path.with_name(f".{path.name}.restoring")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get(str(path), str(staging), recursive=True)
        except Exception as err:  # the objects are not in the cache (a clone that never pulled)
            shutil.rmtree(staging, ignore_errors=True)
            log.warning("%s: could not restore it from DVC's cache (%s); `dvc pull` gets it back", path, err)
            continue
        if path.is_dir():
            shutil.rmtree(path)
        staging.replace(path)
        log.info("%s: restored the version dvc.lock records", path)
