"""Training that survives being killed: progress lives in a scratch folder DVC does not manage.

DVC deletes a stage's declared outputs before it runs the stage, so the stage cannot resume
from them. Instead, after every epoch a training stage writes its weights, momentum and history
to `.rewind/scratch/<run>/progress.safetensors` (atomically, with a content hash), and the dense
run its rewind points beside it. A rerun resumes from there only if the file verifies and its
fingerprint, a hash of all params and of the stage's input files, matches the current run;
otherwise it starts afresh. Because each epoch is a pure function of (weights, momentum, epoch),
the resumed result is bit-identical to an uninterrupted run.

Scratch is the only copy until the stage has written every declared output: rewind points are
copied (hard-linked) into the output folder, never moved, and the whole scratch folder of a stage
is removed only at its end (`finish`). A kill at any point, a seed in the middle or the output
writes at the end, therefore leaves everything a rerun needs.
"""

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict
from pathlib import Path

from torch import nn

from rewind import RewindError
from rewind.checkpoint import load_tensors, read_file, save_tensors
from rewind.data import Dataset
from rewind.optim import MaskedSGD
from rewind.prune import Masks
from rewind.strategies import State
from rewind.train import (
    SGD,
    Augment,
    EpochCallback,
    EpochRecord,
    Precision,
    Resume,
    StepCallback,
    steps_per_epoch,
    train,
)
from stages.shared.params import Params
from stages.shared.progress import Watch

log = logging.getLogger("rewind")

SCRATCH = Path(".rewind/scratch")
PROGRESS = "progress.safetensors"


def scratch_dir(run: str) -> Path:
    """The scratch folder of a training run, e.g. `train/seed-0` or `retrain@lrr-round1/seed-0`."""
    return SCRATCH / run.replace("@", "-")


def fingerprint_of(params: Params, inputs: Sequence[Path], seed: int) -> str:
    """What a run's result depends on: every param, the seed and the bytes of every input file."""
    digest = hashlib.sha256(f"{params.model_dump_json()}|seed={seed}".encode())
    for path in inputs:
        digest.update(str(path).encode())
        digest.update(hashlib.sha256(read_file(path)).digest())
    return digest.hexdigest()


def train_resumably(
    scratch: str,
    fingerprint: str,
    watch: Watch,
    model: nn.Module,
    data: Dataset,
    rates: Sequence[float],
    masks: Masks,
    sgd: SGD,
    seed: int,
    start_step: int = 0,
    on_epoch: EpochCallback | None = None,
    on_fresh_start: Callable[[nn.Module], None] | None = None,
    augment: Augment | None = None,
    precision: Precision = "fp32",
    momentum: State | None = None,
    checkpoint_steps: Collection[int] = (),
    on_checkpoint: StepCallback | None = None,
) -> tuple[list[EpochRecord], State]:
    """rewind.train.train, resumed from and recorded to the progress file of `scratch_dir(scratch)`
    when it verifies and carries `fingerprint` (see `fingerprint_of`). Returns every epoch's
    record and the momentum at the end (what a later `momentum: restored` strategy starts from).

    Starting afresh empties that folder first, so nothing of another run (rewind points of other
    params, say) can leak into this one; `on_fresh_start` then sees the untrained model, and
    training starts from `momentum` (None: fresh). `watch` shows the run as it trains, and
    logs its curves, resumed epochs included."""
    folder = scratch_dir(scratch)
    history: list[EpochRecord] = []
    resume = None
    progress = _load_progress(folder / PROGRESS, fingerprint)
    if progress is None:
        shutil.rmtree(folder, ignore_errors=True)
        if on_fresh_start is not None:
            on_fresh_start(model)
    else:
        weights, saved_momentum, history = progress
        model.load_state_dict({name: w.to(next(model.parameters()).device) for name, w in weights.items()})
        resume = Resume(sum(record.steps for record in history), saved_momentum)
        log.info("%s: resuming after step %d of %d from %s", scratch, resume.steps_done, len(rates), folder / PROGRESS)
    final_momentum = resume.momentum if resume is not None else dict(momentum or {})

    def record(epoch: EpochRecord, trained: nn.Module, optimizer: MaskedSGD) -> None:
        nonlocal final_momentum
        history.append(epoch)
        final_momentum = optimizer.state_dict()
        if on_epoch is not None:
            on_epoch(epoch, trained, optimizer)
        _save_progress(folder / PROGRESS, fingerprint, trained, final_momentum, history)
        watch.epoch(epoch)

    per_epoch = steps_per_epoch(len(data.y_train), sgd.batch_size)
    watch.start(history, range(start_step, start_step + len(rates)), per_epoch, folder)
    try:
        train(
            model,
            data,
            rates,
            masks,
            sgd,
            seed,
            start_step=start_step,
            on_epoch=record,
            resume=resume,
            augment=augment,
            precision=precision,
            momentum=momentum,
            checkpoint_steps=checkpoint_steps,
            on_checkpoint=on_checkpoint,
            on_step=watch.on_step,
        )
    finally:
        watch.close()
    return history, final_momentum


def finish(stage: str) -> None:
    """The stage's outputs are all written: the progress of its runs is no longer needed."""
    shutil.rmtree(scratch_dir(stage), ignore_errors=True)


def _save_progress(path: Path, fingerprint: str, model: nn.Module, momentum: State, history: list[EpochRecord]) -> None:
    tensors = {f"model/{name}": t for name, t in model.state_dict().items()}
    tensors |= {f"momentum/{name}": t for name, t in momentum.items()}
    meta = {"fingerprint": fingerprint, "history": json.dumps([asdict(r) for r in history])}
    save_tensors(path, tensors, meta)


def _load_progress(path: Path, fingerprint: str) -> tuple[dict, dict, list[EpochRecord]] | None:
    """The saved progress if it verifies and belongs to this exact run; None (logged) otherwise."""
    if not path.exists():
        return None
    try:
        tensors, meta = load_tensors(path)
        history = [EpochRecord(**r) for r in json.loads(meta["history"])]
    except (RewindError, KeyError, TypeError, ValueError) as err:
        log.warning("ignoring unusable progress file (%s); starting afresh", err)
        return None
    if meta.get("fingerprint") != fingerprint:
        log.info("%s belongs to other params or inputs; starting afresh", path)
        return None
    weights = {n.removeprefix("model/"): t for n, t in tensors.items() if n.startswith("model/")}
    momentum = {n.removeprefix("momentum/"): t for n, t in tensors.items() if n.startswith("momentum/")}
    return weights, momentum, history


def publish(files: Sequence[Path], target: Path) -> None:
    """Put `files` (kept in scratch) into the output folder `target`: hard links where the file
    system allows, copies elsewhere. Scratch keeps its own until `finish`. A missing file is an
    error naming it: a stage never ends with fewer outputs than it declares."""
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        if not file.is_file():
            raise RewindError(f"{file}: missing from the saved progress; delete {SCRATCH} and run the stage again")
        destination = target / file.name
        destination.unlink(missing_ok=True)
        try:
            os.link(file, destination)
        except OSError:
            shutil.copyfile(file, destination)
