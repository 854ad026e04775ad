"""Checkpoints and masks on disk: safetensors with a content hash, written atomically.

safetensors never unpickles, so a crafted file cannot run code on load; the SHA-256 of the
tensor bytes, stored in the header, makes a truncated or altered file fail loudly instead of
loading garbage, and a NaN or infinity in a floating tensor is refused on load too (a hash only
says the file is the one written: a diverged or hand-made file would otherwise carry its NaN
into every number computed from it). Writes go to a temporary file in the same folder, are fsynced, then renamed
over the target, so a crash never leaves a half-written file where a good one was. A writer
killed mid-write leaves its temporary file behind (no handler runs on SIGKILL); the next write of
the same file removes it, so a rerun ends with the files it declares and nothing else.
"""

import glob
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rewind import RewindError

FORMAT = "rewind/1"
MAX_HEADER = 100_000_000  # safetensors' own limit on a header
HEADER_KEY = "rewind"


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in sorted key order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def temporary_files(path: Path) -> list[Path]:
    """The temporary files of writes of `path`: in flight, or left by a killed writer."""
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` so that readers see either the old file or the whole new one.

    Temporary files an earlier, killed write of `path` left are removed first: one file has one
    writer at a time (each output belongs to one stage, and a stage runs once at a time).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for leftover in temporary_files(path):
            leftover.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise RewindError(f"{path}: cannot write: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a quota, a folder where the file should go
        Path(tmp).unlink(missing_ok=True)
        raise RewindError(f"{path}: cannot write: {err.strerror or err}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
    """Save a flat dict of tensors with its content hash and string metadata."""
    cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    header = {**(meta or {}), "format": FORMAT, "sha256": tensors_digest(cpu)}
    # One metadata key holding sorted JSON: safetensors writes a multi-key map in random order,
    # and identical results must give identical bytes (DVC compares files by hash).
    atomic_write_bytes(Path(path), st_save(cpu, metadata={HEADER_KEY: json.dumps(header, sort_keys=True)}))


def read_file(path: Path) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), or a RewindError naming it:
    missing, unreadable, or not a regular file (a FIFO would block the read, a folder fail it)."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise RewindError(f"{path}: not a regular file")
        return path.read_bytes()
    except FileNotFoundError:
        raise RewindError(f"{path}: file not found") from None
    except OSError as err:
        raise RewindError(f"{path}: cannot read: {err.strerror or err}") from None


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load and verify a file written by `save_tensors`; refuse anything else with its name."""
    path = Path(path)
    payload = read_file(path)
    try:
        # safetensors hands tensors back in an order that changes from process to process;
        # anything that iterates them (random draws, concatenation) needs one canonical order.
        tensors = dict(sorted(st_load(payload).items()))
        meta = _read_metadata(payload)
    except (SafetensorError, ValueError, RuntimeError, UnicodeDecodeError) as err:
        raise RewindError(f"{path}: not a readable rewind checkpoint ({_one_line(err)})") from None
    if meta.get("format") != FORMAT:
        raise RewindError(f"{path}: not a rewind checkpoint (format {meta.get('format')!r})")
    if tensors_digest(tensors) != meta.get("sha256"):
        raise RewindError(f"{path}: content hash mismatch: the file is corrupt or was altered")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RewindError(f"{path}: tensor {name!r} holds NaN or infinity; rerun the stage that wrote it")
    meta = {k: v for k, v in meta.items() if k not in ("format", "sha256")}
    return tensors, meta


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a file `save_tensors` wrote, from its header alone: for facts about
    a large file (a dataset's size) without reading its tensors. The content hash covers the
    tensors, so it is not checked here; `load_tensors` checks it."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= MAX_HEADER:
                raise ValueError(f"a header of {size} bytes")
            meta = _read_metadata(size.to_bytes(8, "little") + handle.read(size))
    except FileNotFoundError:
        raise RewindError(f"{path}: file not found") from None
    except OSError as err:
        raise RewindError(f"{path}: cannot read: {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RewindError(f"{path}: not a readable rewind checkpoint ({_one_line(err)})") from None
    if meta.get("format") != FORMAT:
        raise RewindError(f"{path}: not a rewind checkpoint (format {meta.get('format')!r})")
    return {k: v for k, v in meta.items() if k not in ("format", "sha256")}


def _read_metadata(payload: bytes) -> dict[str, str]:
    """The header's string metadata (the payload was already validated by safetensors)."""
    size = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + size])
    meta = json.loads((header.get("__metadata__") or {}).get(HEADER_KEY, "{}"))
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a mapping")
    return {str(k): str(v) for k, v in meta.items()}


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
