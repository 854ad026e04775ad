"""Training that survives being killed: progress lives in a scratch folder DVC does not manage.

DVC deletes a stage's declared outputs before it runs the stage, so the stage cannot resume
from them. Instead, after every epoch a training stage writes its weights, momentum and history
to `.rewind/scratch/<stage>/progress.safetensors` (atomically, with a content hash). A rerun
resumes from there only if the file verifies and its fingerprint, a hash of all params and of
the stage's input files, matches the current run; otherwise it starts afresh. Because each
epoch is a pure function of (weights, momentum, epoch), the resumed result is bit-identical to
an uninterrupted run. On success the scratch folder is removed.
"""

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from torch import nn

from rewind import RewindError
from rewind.checkpoint import load_tensors, save_tensors
from rewind.data import Dataset
from rewind.optim import MaskedSGD
from rewind.prune import Masks
from rewind.train import SGD, Augment, EpochRecord, Precision, Resume, train
from stages.common import log
from stages.params import Params

SCRATCH = Path(".rewind/scratch")
PROGRESS = "progress.safetensors"


def scratch_dir(stage: str) -> Path:
    return SCRATCH / stage.replace("@", "-")


def fingerprint(params: Params, inputs: Sequence[Path], seed: int) -> str:
    """What a run's result depends on: every param, the seed and the bytes of every input file."""
    digest = hashlib.sha256(f"{params.model_dump_json()}|seed={seed}".encode())
    for path in inputs:
        digest.update(str(path).encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def train_resumably(
    stage: str,
    key: str,
    model: nn.Module,
    data: Dataset,
    rates: Sequence[float],
    masks: Masks,
    sgd: SGD,
    seed: int,
    labels: Sequence[int] | None = None,
    on_epoch: Callable[[EpochRecord, nn.Module], None] | None = None,
    on_fresh_start: Callable[[nn.Module], None] | None = None,
    augment: Augment | None = None,
    precision: Precision = "fp32",
) -> list[EpochRecord]:
    """rewind.train.train, resumed from and recorded to the stage's scratch progress file.

    Starting afresh empties the scratch folder first, so nothing of another run (another
    seed's rewind points, say) can leak into this one; `on_fresh_start` then sees the untrained
    model."""
    folder = scratch_dir(stage)
    history: list[EpochRecord] = []
    resume = None
    progress = _load_progress(folder / PROGRESS, key)
    if progress is None:
        shutil.rmtree(folder, ignore_errors=True)
        if on_fresh_start is not None:
            on_fresh_start(model)
    else:
        weights, momentum, history = progress
        model.load_state_dict({name: w.to(next(model.parameters()).device) for name, w in weights.items()})
        resume = Resume(len(history), momentum)
        log.info("%s: resuming after epoch %d of %d from %s", stage, len(history), len(rates), folder / PROGRESS)

    def record(epoch: EpochRecord, trained: nn.Module, optimizer: MaskedSGD) -> None:
        history.append(epoch)
        if on_epoch is not None:
            on_epoch(epoch, trained)
        _save_progress(folder / PROGRESS, key, trained, optimizer, history)

    train(
        model,
        data,
        rates,
        masks,
        sgd,
        seed,
        labels=labels,
        on_epoch=record,
        resume=resume,
        augment=augment,
        precision=precision,
    )
    return history


def finish(stage: str) -> None:
    """The stage's outputs are written: its progress is no longer needed."""
    shutil.rmtree(scratch_dir(stage), ignore_errors=True)


def _save_progress(path: Path, key: str, model: nn.Module, optimizer: MaskedSGD, history: list[EpochRecord]) -> None:
    tensors = {f"model/{name}": t for name, t in model.state_dict().items()}
    tensors |= {f"momentum/{name}": t for name, t in optimizer.state_dict().items()}
    meta = {"fingerprint": key, "history": json.dumps([asdict(r) for r in history])}
    save_tensors(path, tensors, meta)


def _load_progress(path: Path, key: str) -> tuple[dict, dict, list[EpochRecord]] | None:
    """The saved progress if it verifies and belongs to this exact run; None (logged) otherwise."""
    if not path.exists():
        return None
    try:
        tensors, meta = load_tensors(path)
        history = [EpochRecord(**r) for r in json.loads(meta["history"])]
    except (RewindError, KeyError, TypeError, ValueError) as err:
        log.warning("ignoring unusable progress file (%s); starting afresh", err)
        return None
    if meta.get("fingerprint") != key:
        log.info("%s belongs to other params or inputs; starting afresh", path)
        return None
    weights = {n.removeprefix("model/"): t for n, t in tensors.items() if n.startswith("model/")}
    momentum = {n.removeprefix("momentum/"): t for n, t in tensors.items() if n.startswith("momentum/")}
    return weights, momentum, history


def move_checkpoints(source: Path, target: Path) -> None:
    """Move finished rewind points from scratch into the declared output folder."""
    target.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.glob("epoch-*.safetensors")):
        file.replace(target / file.name)
