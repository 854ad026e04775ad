"""A run with overrides, recorded as a DVC experiment, leaving the workspace as it found it.

`dvc exp run -S` would record the experiment too, but it runs stages one at a time. Instead the
flow writes the overrides into params.yaml, runs the stages in parallel with `dvc repro -s`,
saves the result with `dvc exp save` (an experiment ref beside HEAD, visible in `dvc exp show`
and comparable with `dvc metrics diff`), then puts back the committed params.yaml, dvc.lock and
git-tracked outputs and relinks DVC-tracked outputs from the cache (`dvc checkout`). So the next
scheduled run starts from the committed configuration, and `dvc status` is clean afterwards.

It insists on a workspace whose git-tracked files match HEAD: restoring would otherwise throw
away uncommitted edits, and the experiment would silently include them.
"""

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from pipeline import PipelineError, dvc_cli
from pipeline.options import write_changes

log = logging.getLogger("rewind.pipeline")
LOCK_FILE = "dvc.lock"
SAVED_AS = re.compile(r"Experiment has been saved as: (\S+)")


def git(project: Path, *args: str) -> str:
    """Run git in `project`; a failure is one PipelineError line."""
    result = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PipelineError(f"git {' '.join(args)}: {(result.stderr.strip() or 'failed').splitlines()[0]}")
    return result.stdout


def require_clean(project: Path) -> None:
    """Refuse an experiment when git-tracked files differ from HEAD, naming the first few."""
    changed = git(project, "status", "--porcelain", "--untracked-files=no").splitlines()
    if changed:
        names = ", ".join(line[3:] for line in changed[:5]) + (", …" if len(changed) > 5 else "")
        raise PipelineError(
            f"overrides need a workspace that matches git HEAD, to restore it afterwards; commit or stash: {names}"
        )


def lock_outputs(text: str) -> set[str]:
    """Output paths recorded in a dvc.lock text."""
    stages = (yaml.safe_load(text) or {}).get("stages", {})
    return {out["path"] for stage in stages.values() for out in stage.get("outs", [])}


@contextmanager
def experiment(project: Path, changes: dict[str, Any], name: str | None) -> Iterator[Callable[[], str | None]]:
    """Apply `changes` to params.yaml for the duration, then restore the committed workspace.

    Yields `save`, which records the workspace as it is then (`dvc exp save`) and returns the
    experiment's name. Without changes the run is a plain `dvc repro`: nothing is written, nothing
    restored, and `save` records nothing.
    """
    if not changes:
        yield lambda: None
        return
    require_clean(project)
    if name is not None and name in existing_experiments(project):
        raise PipelineError(f"experiment: {name!r} exists already for this commit; pick another name")
    untracked = set(untracked_files(project))
    write_changes(project, changes)
    try:
        yield lambda: save(project, name)
    finally:
        restore(project, untracked)


def save(project: Path, name: str | None) -> str:
    """`dvc exp save` the workspace as it is now; returns the experiment's name."""
    output = dvc_cli.output(project, "exp", "save", *(["--name", name] if name else []))
    found = SAVED_AS.search(output)
    return found.group(1) if found else (name or "?")


def existing_experiments(project: Path) -> set[str]:
    """Names of the experiments based on HEAD."""
    head = git(project, "rev-parse", "HEAD").strip()
    refs = git(project, "for-each-ref", "--format=%(refname)", f"refs/exps/{head[:2]}/{head[2:]}/")
    return {ref.rsplit("/", 1)[-1] for ref in refs.splitlines()}


def untracked_files(project: Path) -> list[str]:
    """Files git sees but does not track (ignored ones left out)."""
    return [name for name in git(project, "ls-files", "--others", "--exclude-standard").split("\n") if name]


def restore(project: Path, untracked_before: set[str]) -> None:
    """Put back HEAD's tracked files, drop outputs only the experiment declared, relink the rest.

    Untracked files the run created are removed only if they are dvc.lock or declared outputs
    (e.g. the first run of a project whose results were never committed).
    """
    lock = project / LOCK_FILE
    experiment_outs = lock_outputs(lock.read_text()) if lock.exists() else set()
    for name in set(untracked_files(project)) - untracked_before:
        if name == LOCK_FILE or name in experiment_outs:
            _remove(project / name)
    changed = git(project, "diff", "--name-only", "HEAD").split("\n")
    changed = [name for name in changed if name]
    if changed:
        git(project, "checkout", "HEAD", "--", *changed)
    committed_outs = lock_outputs(lock.read_text()) if lock.exists() else set()
    for path in sorted(experiment_outs - committed_outs):
        _remove(project / path)
    if committed_outs:
        dvc_cli.output(project, "checkout", "--force")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    else:
        return
    log.info("removed %s: written by the experiment only", path)
