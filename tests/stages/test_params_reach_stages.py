"""Values params.yaml's validator accepts reach the stages that consume them without a traceback.

A tiny project is built once per module (every stage run, every output present). Hypothesis then
draws params documents that differ from the tiny params in one to three "knobs" (a key, or a few
keys that only make sense together, e.g. one-shot pruning with its sparsities and rounds), with
values at the edges of what the validator accepts. A document the validator refuses is skipped.
Each accepted document is written into a fresh copy of the built project and the stages its
changed keys reach run in pipeline order, stopping at the first that fails, as `dvc repro` would.

Every stage must exit 0 with its declared outputs present and none lost, or exit 2 with exactly
one `error:` line, no traceback, and every file under runs/, results/, reports/ and
data/prepared/ byte-identical to before it ran. Breaches are collected, not raised, so one run
lists them all; `test_stages_take_accepted_params` (after the property, in file order) fails
with the outcome counts and every breach: the changed keys, the stage and the last stderr lines.

Stages run in this process, through their real entry point (`runpy` runs `stages.<name>` as
`__main__` with its arguments): a new interpreter per stage would spend seconds importing torch,
and the property needs many. Tracebacks are what escapes the entry point; tests elsewhere
(test_bad_files, test_resumable) run the same stages as real processes.
"""

import contextlib
import hashlib
import io
import json
import math
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from stages.shared.params import FLOAT32_MAX, ParamsError, load_params
from tests.conftest import copy_of, tiny_params

BASE = tiny_params()
COMPARED = tuple(BASE["compare"])  # ft, wr, lrr: evaluate and report need all of them
ROUNDS = (0, 1)
OUTPUT_ROOTS = ("runs", "results", "reports", "data/prepared")
STAGE_TIMEOUT_S = 300
OUTCOMES = {"completed": 0, "one-line error": 0}
FAILURES: list[str] = []

# ---------------------------------------------------------------------------------------------
# Which stages a top-level key reaches: the stages that consume it, joined with the `params:` of
# every stage in dvc.yaml (retrain and evaluate read prune.exclude, evaluate train.device and
# train.threads, report strategies, prune, sweep, data.name and train.epochs). `validate` reads
# every key, so it always runs first.
ALL = ("validate", "prepare", "train", "prune", "retrain", "sweep", "evaluate", "report")
REACH = {
    "seeds": set(ALL),
    "model": set(ALL),
    "data": {"prepare", "train", "prune", "report"},
    "train": {"train", "retrain", "sweep", "evaluate", "report"},
    "prune": {"prune", "retrain", "sweep", "evaluate", "report"},
    "strategies": {"prune", "retrain", "sweep", "report"},
    "sweep": {"sweep", "report"},
    "rounds": {"prune", "retrain", "evaluate", "report"},
    "compare": {"prune", "retrain", "evaluate", "report"},
    "controls": {"retrain", "evaluate", "report"},
}

# ---------------------------------------------------------------------------------------------
# Values at the edges of what the validator accepts.
U32 = 2**32 - 1
BELOW_ONE = math.nextafter(1.0, 0.0)
TINIEST = 5e-324  # the smallest positive float
DIGITS = 1797  # images in scikit-learn's digits; a stratified split needs 10 on each side
SEED_EDGES = [0, 1, 2**31 - 1, 2**31, U32 - 1, U32]
FRACTION_EDGES = [TINIEST, 1e-12, 1e-3, 0.5, 0.999, 1 - 1e-9, BELOW_ONE]
TEST_FRACTION_EDGES = [
    9 / DIGITS,
    math.nextafter(9 / DIGITS, 1.0),
    10 / DIGITS,
    0.5,
    1787 / DIGITS,
    math.nextafter(1787 / DIGITS, 0.0),
    math.nextafter(1787 / DIGITS, 1.0),
]
OPEN_UNIT = st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)
GLOBS = [["1.weight"], ["3.weight"], ["5.weight"], ["1.weight", "5.weight"], ["[35].weight"], ["3.*"], ["*5.weight"]]


def one(dotted: str, values: st.SearchStrategy) -> st.SearchStrategy:
    """A knob that sets one key."""
    return values.map(lambda value: {dotted: value})


def edges(values: list, fallback: st.SearchStrategy | None = None) -> st.SearchStrategy:
    """Mostly the listed edge values, sometimes anything from `fallback`."""
    listed = st.sampled_from(values)
    return listed if fallback is None else st.one_of(listed, listed, fallback)


@st.composite
def shorter_dense_run(draw) -> dict:
    """train.epochs below the tiny 4, with what must shrink with it: milestones and budgets."""
    epochs = draw(st.integers(1, 3))
    change = {"train.epochs": epochs, "train.milestones": [m for m in BASE["train"]["milestones"] if m < epochs]}
    for name, spec in BASE["strategies"].items():
        if spec["budget"] > epochs:
            change[f"strategies.{name}.budget"] = draw(st.integers(0, epochs))
    change["sweep.budgets"] = sorted({min(b, epochs) for b in BASE["sweep"]["budgets"]})
    return change


@st.composite
def oneshot(draw) -> dict:
    """One-shot pruning: one increasing sparsity per round, every round from the dense network."""
    low, high = sorted(draw(st.lists(edges(FRACTION_EDGES), min_size=2, max_size=2, unique=True)))
    return {
        "prune.schedule": "oneshot",
        "prune.sparsities": [low, high],
        "rounds": [{"id": k, "prev": "../dense"} for k in ROUNDS],
    }


@st.composite
def strategy_change(draw) -> dict:
    """One compared strategy's budget (0 … epochs), start weights, rates, pruning control or stated rate."""
    name = draw(st.sampled_from(COMPARED))
    key, values = draw(
        st.sampled_from(
            [
                ("budget", st.integers(0, BASE["train"]["epochs"])),
                ("weights", st.sampled_from(["final", "rewind", "reinit"])),
                ("rates", st.sampled_from(["replay", "constant"])),
                ("pruning", st.sampled_from(["random", "magnitude"])),
                ("lr", st.sampled_from([TINIEST, 0.001, FLOAT32_MAX])),  # a stated constant rate
            ]
        )
    )
    return {f"strategies.{name}.{key}": draw(values)}


KNOBS: dict[str, st.SearchStrategy] = {
    "seeds": one("seeds", st.lists(edges(SEED_EDGES, st.integers(0, U32)), min_size=1, max_size=2, unique=True)),
    "data.split_seed": one("data.split_seed", edges(SEED_EDGES, st.integers(0, U32))),
    "data.test_fraction": one(
        "data.test_fraction", edges(TEST_FRACTION_EDGES, st.floats(9 / DIGITS, 1787 / DIGITS, exclude_min=True))
    ),
    # a published dataset from a folder that does not hold it: a one-line error from prepare
    "data.name": st.sampled_from(["mnist", "cifar10"]).flatmap(
        lambda name: st.sampled_from(["no-such-folder", "stages", "/", "params.yaml", "two\nlines"]).map(
            lambda root: {"data.name": name, "data.root": root}
        )
    ),
    "model.name": one("model.name", st.just("lenet5")),
    "train.epochs": shorter_dense_run(),
    "train.batch_size": st.one_of(
        one("train.batch_size", st.sampled_from([1346, 1347, 1348, 10**9])),  # 1347 training images
        # tiny batches on the smallest training split the validator accepts: 1347 steps an epoch
        # would cost a minute an example
        st.sampled_from([1, 2, 3]).map(lambda size: {"train.batch_size": size, "data.test_fraction": 1787 / DIGITS}),
    ),
    "train.lr": one("train.lr", edges([1e-12, 1e-6, 1.0, 100.0, 1e10, 3.4e38, FLOAT32_MAX], st.floats(1e-12, 3.4e38))),
    "train.momentum": one("train.momentum", edges([0.0, 0.5, 0.999, 1 - 1e-9, BELOW_ONE], st.floats(0.0, BELOW_ONE))),
    "train.weight_decay": one("train.weight_decay", st.sampled_from([0.0, 1.0, 1e4, 1e30, 3.4e38, FLOAT32_MAX])),
    "train.nesterov": st.sampled_from([0.0, BELOW_ONE, BASE["train"]["momentum"]]).map(
        lambda momentum: {"train.nesterov": True, "train.momentum": momentum}
    ),
    "train.milestones": one("train.milestones", st.sampled_from([[], [1], [3], [1, 2, 3], [2, 3]])),
    "train.gamma": one("train.gamma", st.sampled_from([TINIEST, 1e-300, 1e-45, 1e-38, 1e-3, 1.0])),
    "train.warmup_epochs": one("train.warmup_epochs", st.integers(0, BASE["train"]["epochs"] - 1)),
    "train.device": one("train.device", st.sampled_from(["auto", "cuda"])),
    "train.threads": one("train.threads", st.sampled_from([None, 2, 3])),
    "train.precision": one("train.precision", st.just("bf16")),
    "train.augment": one("train.augment", st.just(True)),
    "train.channels_last": one("train.channels_last", st.just(True)),
    "prune.fraction": one("prune.fraction", edges(FRACTION_EDGES, OPEN_UNIT)),
    "prune.exclude": one("prune.exclude", st.sampled_from(GLOBS)),
    "prune.scope": one("prune.scope", st.just("layer")),
    "prune.method": one("prune.method", st.just("random")),
    "prune.granularity": st.just({"prune.granularity": "filter", "prune.scope": "layer"}),
    "prune.schedule": oneshot(),
    "strategies": strategy_change(),
    "sweep.strategies": one(
        "sweep.strategies",
        st.lists(st.sampled_from(sorted(BASE["strategies"])), min_size=1, max_size=2, unique=True),
    ),
    "sweep.sparsities": one(
        "sweep.sparsities",
        st.one_of(
            st.lists(edges(FRACTION_EDGES), min_size=1, max_size=2, unique=True),
            st.sampled_from([[0.9, 0.9000001], [1 - 1e-9, BELOW_ONE]]),  # distinct, if close
        ),
    ),
    "sweep.budgets": one(
        "sweep.budgets", st.lists(st.integers(0, BASE["train"]["epochs"]), min_size=1, max_size=3, unique=True)
    ),
}


@st.composite
def changes(draw) -> dict:
    """One to three knobs, later ones winning where they set the same key."""
    names = draw(st.lists(st.sampled_from(sorted(KNOBS)), min_size=1, max_size=3, unique=True))
    change: dict = {}
    for name in names:
        change |= draw(KNOBS[name])
    return change


def applied(change: dict) -> dict:
    """The tiny params with `change` (dotted keys) applied."""
    return tiny_params(**change)


# ---------------------------------------------------------------------------------------------
# Running stages.


@dataclass(frozen=True)
class Stage:
    kind: str
    args: tuple[str, ...] = ()

    @property
    def argv(self) -> list[str]:
        return [f"stages.{self.kind}", *self.args]

    def __str__(self) -> str:
        return " ".join(["python -m", *self.argv])


def pipeline(params: dict) -> list[Stage]:
    """Every stage of `params`, in an order `dvc repro` could run them."""
    stages = [Stage("validate"), Stage("prepare"), Stage("train")]
    for strategy in params["compare"]:
        for spec in params["rounds"]:
            for kind in ("prune", "retrain"):
                stages.append(Stage(kind, ("--strategy", strategy, "--round", str(spec["id"]))))
    for strategy in params["controls"]["strategies"]:  # dvc.yaml's `control` stages run stages.retrain
        stages += [Stage("retrain", ("--strategy", strategy, "--round", str(spec["id"]))) for spec in params["rounds"]]
    stages += [Stage("sweep", ("--strategy", s)) for s in params["sweep"]["strategies"]]
    return [*stages, Stage("evaluate"), Stage("report")]


def reached(change: dict, params: dict) -> list[Stage]:
    kinds = {"validate"}.union(*(REACH[dotted.split(".")[0]] for dotted in change))
    return [stage for stage in pipeline(params) if stage.kind in kinds]


def outputs(stage: Stage, params: dict) -> list[str]:
    """The files a successful run of `stage` must leave (dvc.yaml's outs, per seed)."""
    seeds = params["seeds"]
    if stage.kind == "validate":
        return ["results/params.ok"]
    if stage.kind == "prepare":
        return ["data/prepared/dataset.safetensors"]
    if stage.kind == "train":
        epochs = params["train"]["epochs"]
        return [
            *(f"runs/dense/{d}/seed-{s}.safetensors" for d in ("models", "masks", "momentum") for s in seeds),
            *(f"runs/dense/history/seed-{s}.json" for s in seeds),
            *(
                f"runs/dense/checkpoints/seed-{s}/{kind}-{e:03d}.safetensors"
                for kind in ("epoch", "momentum")
                for s in seeds
                for e in range(epochs + 1)
            ),
        ]
    if stage.kind in ("prune", "retrain"):
        point = f"runs/{stage.args[1]}/round-{stage.args[3]}"
        if stage.kind == "prune":
            return [f"{point}/masks/seed-{s}.safetensors" for s in seeds]
        kept = (
            ("models", "masks", "momentum")
            if stage.args[1] in params["controls"]["strategies"]
            else ("models", "momentum")
        )
        return [f"{point}/{d}/seed-{s}.safetensors" for d in kept for s in seeds] + [
            f"{point}/history/seed-{s}.json" for s in seeds
        ]
    if stage.kind == "sweep":
        return [f"results/sweep/{stage.args[1]}.json"]
    if stage.kind == "evaluate":
        return ["results/evaluations.json", "results/metrics.json"]
    names = ["report.md", "accuracy.csv", "budget.csv", "accuracy_vs_sparsity.png", "accuracy_vs_budget.png"]
    return [f"reports/{name}" for name in [*names, "dense_training.png"]] + ["results/headline.json"]


def lost_results(stage: Stage, params: dict, project: Path) -> list[str]:
    """Results a sweep file lacks: one per distinct budget and distinct sparsity."""
    if stage.kind != "sweep":
        return []
    path = f"results/sweep/{stage.args[1]}.json"
    try:
        budgets = json.loads((project / path).read_text())["budgets"]
        found = {(b, s) for b, by_sparsity in budgets.items() for s in by_sparsity}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return [f"{path}: unreadable ({err!r})"]
    sweep = params["sweep"]
    expected = len(set(sweep["budgets"])) * len(set(sweep["sparsities"]))
    missing = expected - len(found)
    return [f"{path}: {missing} of {expected} (budget, sparsity) results"] if missing > 0 else []


def digests(project: Path) -> dict[str, str]:
    found = {}
    for root in OUTPUT_ROOTS:
        for path in sorted((project / root).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(project))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_in_process(stage: Stage, project: Path) -> subprocess.CompletedProcess:
    """`python -m stages.<name> ...` without a new interpreter (torch's import is seconds of every
    one here): the module runs as `__main__` in `project`, through the stages' real entry point;
    its exit status and stderr are captured, an escaping exception becomes its traceback and exit 1."""

    def over_time(signum, frame):
        raise TimeoutError(f"over {STAGE_TIMEOUT_S} s")

    stderr, code, cwd, argv = io.StringIO(), 0, os.getcwd(), sys.argv
    previous = signal.signal(signal.SIGALRM, over_time)
    signal.alarm(STAGE_TIMEOUT_S)
    try:
        os.chdir(project)
        sys.argv = list(stage.argv)
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(stage.argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
    except BaseException:
        stderr.write(traceback.format_exc())
        code = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
        sys.argv = argv
    return subprocess.CompletedProcess(stage.argv, code, "", stderr.getvalue())


@pytest.fixture(scope="module")
def built(reproduced, tmp_path_factory) -> Path:
    """The tiny project with every stage run once (a copy of the session's): every output present."""
    project = copy_of(reproduced[0], tmp_path_factory.mktemp("reach") / "project")
    assert yaml.safe_load((project / "params.yaml").read_text()) == BASE
    return project


def breach(change: dict, stage: Stage, result: subprocess.CompletedProcess, why: str) -> str:
    shown = 6 if why == "traceback" else 2
    tail = "\n".join("    " + line for line in result.stderr.strip().splitlines()[-shown:])
    return f"{json.dumps(change)}\n  {stage} (exit {result.returncode}): {why}\n{tail}"


def check_stages(project: Path, change: dict, params: dict) -> str:
    """Run the stages `change` reaches in `project`; the outcome, or a breach description."""
    for stage in reached(change, params):
        before = digests(project)
        result = run_in_process(stage, project)
        if "Traceback" in result.stderr:
            return breach(change, stage, result, "traceback")
        if result.returncode == 0:
            after = digests(project)
            lost = sorted(set(before) - set(after)) + [p for p in outputs(stage, params) if p not in after]
            lost += lost_results(stage, params, project)
            if lost:
                return breach(change, stage, result, f"completed but outputs are missing: {lost[:5]}")
            continue
        lines = result.stderr.splitlines()
        errors = [index for index, line in enumerate(lines) if line.startswith("error:")]
        if result.returncode != 2 or len(errors) != 1:
            return breach(change, stage, result, f"expected exit 2 with one error line, got {len(errors)}")
        if errors[0] != len(lines) - 1:
            return breach(change, stage, result, "the error message goes on past its `error:` line")
        after = digests(project)
        if after != before:
            changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
            return breach(change, stage, result, f"failed but changed outputs: {changed[:5]}")
        return "one-line error"
    return "completed"


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(change=changes())
# Breaches found by this test, kept as explicit examples so they stay checked whatever is drawn:
@example(change={"train.nesterov": True, "train.momentum": 0.0})  # a ValueError traceback from train
@example(change={"sweep.sparsities": [0.9, 0.9000001]})  # both keyed "0.9": one sparsity's results lost
@example(change={"data.name": "mnist", "data.root": "two\nlines"})  # a two-line error from prepare
def test_accepted_params_reach_their_stages(built, change):
    params = applied(change)
    with tempfile.TemporaryDirectory(dir=built.parent) as scratch:
        project = Path(scratch) / "project"
        document = Path(scratch) / "params.yaml"
        document.write_text(yaml.safe_dump(params, sort_keys=False))
        try:
            load_params(document)
        except ParamsError:
            assume(False)
        shutil.copytree(built, project, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        shutil.copyfile(document, project / "params.yaml")
        started = time.perf_counter()
        outcome = check_stages(project, change, params)
    verdict = outcome if outcome in OUTCOMES else "BREACH"
    print(f"{time.perf_counter() - started:5.1f} s  {verdict}: {json.dumps(change)}")
    if outcome in OUTCOMES:
        OUTCOMES[outcome] += 1
    else:
        FAILURES.append(outcome)


def test_stages_take_accepted_params():
    """Runs after the property above (file order): no breach, and both outcomes occurred."""
    counts = ", ".join(f"{name}: {count}" for name, count in OUTCOMES.items())
    report = f"{counts}; breaches: {len(FAILURES)}\n" + "\n".join(FAILURES)
    print(report)
    assert not FAILURES, report
    assert OUTCOMES["completed"] >= 1, report
    assert OUTCOMES["one-line error"] >= 1, report
