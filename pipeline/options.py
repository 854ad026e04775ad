"""What one flow run does (RunOptions), resolved once against params.yaml (RunPlan).

Overrides are checked against params.yaml before anything is written: an unknown key or
strategy is one line naming it, and the merged params must pass the same validation the
`validate` stage applies, so a bad value never costs a half-run pipeline.
"""

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline import PipelineError

PARAMS_FILE = "params.yaml"
COMPARE_KEY = "compare"
STRATEGIES_KEY = "strategies"


class RunOptions(BaseModel):
    """The flow's parameters; Prefect's UI and `prefect deployment run --param` show these fields."""

    model_config = ConfigDict(extra="forbid")

    strategies: list[str] | None = Field(
        default=None,
        description="Strategies to compare (params.yaml `compare`); default: those in params.yaml.",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="params.yaml keys, dotted as for `dvc exp run -S`, mapped to new values; "
        "e.g. {'strategies.lrr.budget': 30}. A run that changes params.yaml is saved as a DVC experiment.",
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Stages run at the same time, at most; default: on a CPU enough to fill the cores "
        "with train.threads each, plus one (3 on 2 cores with 1 thread), on a GPU two.",
    )
    retries: int = Field(default=2, ge=0, le=10, description="Retries of a stage after a transient failure.")
    experiment: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$",
        description="Name of the DVC experiment a run with overrides is saved as; default: DVC picks one.",
    )


def stages_at_once(options: RunOptions, params: dict[str, Any]) -> int:
    """`options.parallelism`, or the default for where the stages compute (params' `train`).

    On a CPU: enough stages to fill the cores with `train.threads` each (null: one per core), plus
    one. A stage holds DVC's repository lock briefly before and after its command; with just
    enough stages to fill the cores, a stage waiting for that lock leaves its share idle, and the
    extra one takes it (README, Performance, has the measurements). On a GPU: two, one computing
    while the other starts or saves; more would share its memory.
    """
    if options.parallelism is not None:
        return options.parallelism
    train = params.get("train")
    if not isinstance(train, dict):
        train = {}
    if train.get("device", "cpu") != "cpu":
        return 2
    cores = len(os.sched_getaffinity(0))
    threads = train.get("threads")
    per_stage = threads if isinstance(threads, int) and threads > 0 else cores
    return max(1, cores // per_stage) + 1


class RunPlan(BaseModel):
    """A run's options resolved against params.yaml, once: what it changes and the params it runs.

    Made by `plan_run`, then passed on: the flow sizes its parallelism from `params`, writes
    `changes` into params.yaml for an experiment and names them in its results.
    """

    options: RunOptions
    project: str  # the project folder, absolute
    changes: dict[str, Any]  # dotted params.yaml key → new value, only where it differs
    params: dict[str, Any]  # params.yaml with the changes applied, validated as the stages validate it


def plan_run(options: RunOptions, project: Path) -> RunPlan:
    """This run's changes to params.yaml and the params they give, checked as the stages check them.

    `strategies` is sugar for an override of `compare`. Raises PipelineError, one line naming the
    key, before anything is written: `python -m pipeline` calls it before Prefect starts, so a bad
    override costs no server; a deployment's run calls it as the flow starts.
    """
    if options.strategies is not None and COMPARE_KEY in options.overrides:
        raise PipelineError(f"options: give the strategies as `strategies` or as overrides[{COMPARE_KEY!r}], not both")
    wanted = dict(options.overrides)
    if options.strategies is not None:
        wanted[COMPARE_KEY] = list(options.strategies)
    params = read_params(project)
    changes = _apply(params, wanted)
    _check_strategies(params)
    if changes:
        check_params(params)
    elif options.experiment is not None:
        raise PipelineError("experiment: a name is given but no override changes params.yaml; nothing to record")
    return RunPlan(options=options, project=str(project.resolve()), changes=changes, params=params)


def read_params(project: Path) -> dict[str, Any]:
    """params.yaml as plain data; a missing or broken file is one line."""
    path = project / PARAMS_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PipelineError(f"{PARAMS_FILE}: cannot read: {' '.join(str(err).split())[:200]}") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{PARAMS_FILE}: expected a mapping at the top level")
    return data


def check_params(params: dict[str, Any]) -> None:
    """Validate params with the stages' own rules (stages.shared.params), before writing anything."""
    from stages.shared.params import ParamsError, params_from_mapping  # the one definition of valid params

    try:
        params_from_mapping(params, PARAMS_FILE)
    except ParamsError as err:  # one line naming the key
        raise PipelineError(f"overrides: {err}") from None


def write_changes(project: Path, changes: dict[str, Any]) -> None:
    """Apply `changes` to params.yaml in place, keeping its comments and layout (as `dvc exp run -S` does)."""
    from dvc.utils.serialize import modify_yaml  # DVC's own round-trip editor of params files

    with modify_yaml(project / PARAMS_FILE) as data:
        for key, value in changes.items():
            container, last = _locate(data, key)
            container[last] = value


def _apply(params: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """Set every wanted key (dotted) in `params`, in place; returns the keys whose value changed."""
    changes = {}
    for key, value in wanted.items():
        container, last = _locate(params, key)
        if container[last] != value:
            container[last] = value
            changes[key] = value
    return changes


def _locate(data: Any, dotted: str) -> tuple[Any, Any]:
    """The container holding `dotted` and the last key (an int for a list index); unknown → PipelineError."""
    parts = dotted.split(".")
    node = data
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, dict):
            if part not in node:
                known = ", ".join(map(str, node)) or "nothing"
                raise PipelineError(f"overrides: unknown params.yaml key {here!r} (known here: {known})")
            key: Any = part
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise PipelineError(f"overrides: unknown params.yaml key {here!r} (a list of {len(node)} items)")
            key = int(part)
        else:
            raise PipelineError(f"overrides: unknown params.yaml key {here!r} ({'.'.join(parts[:depth])} is a value)")
        if depth == len(parts) - 1:
            return node, key
        node = node[key]
    raise PipelineError("overrides: empty key")


def _check_strategies(params: dict[str, Any]) -> None:
    compare = params.get(COMPARE_KEY)
    defined = params.get(STRATEGIES_KEY) or {}
    if not isinstance(compare, list) or not compare:
        raise PipelineError(f"strategies: expected a non-empty list of strategy names, got {compare!r}")
    for name in compare:
        if name not in defined:
            raise PipelineError(f"strategies: unknown strategy {name!r}; defined in params.yaml: {sorted(defined)}")
    if len(set(compare)) != len(compare):
        raise PipelineError(f"strategies: a strategy is named twice in {compare}")
