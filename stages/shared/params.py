"""params.yaml, validated once at the boundary.

Every key has a type and a range; cross-key rules (budgets within the dense run, a round chain
that matches the pruning schedule, known strategy names) are checked after parsing. Any problem
becomes one ParamsError line that names the key: `params.yaml: strategies.ft.budget: ...`.
"""

import dataclasses
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from rewind import RewindError
from rewind.checkpoint import read_file
from rewind.data import DIGITS_IMAGES, SHAPES, split_sizes, validation_size
from rewind.models import architecture, builder, prunable_names
from rewind.plugins import is_import_path, load_callable
from rewind.prune import excluded
from rewind.schedule import Duration, Schedule, ScheduleKind
from rewind.strategies import STILL_FRACTION, Strategy, resolve, too_small_to_train
from rewind.train import steps_per_epoch

PARAMS_FILE = Path("params.yaml")
DENSE_PREV = "../dense"
STRATEGY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
RESERVED_NAMES = ("dense",)  # runs/dense and the metrics' "dense" key belong to the dense network
DATASETS = tuple(SHAPES)
TRAIN_EXAMPLES = {"cifar10": 50_000, "mnist": 60_000}  # their published training splits
FOLDER_DATASETS = ("cifar10", "mnist")  # read from data.root in their published formats
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


def _budget(value: object) -> int | str:
    """A retraining budget: epochs (20) or iterations of the dense run (500it), as Duration."""
    try:
        Duration.parse(value)  # type: ignore[arg-type]
    except RewindError:
        raise ValueError("a budget is an epoch count (20) or iterations (500it)") from None
    return value  # type: ignore[return-value]


Budget = Annotated[int | str, PlainValidator(_budget)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what numpy and scikit-learn accept as a seed
FLOAT32_MAX = 3.4028234663852886e38  # a rate or decay beyond it cannot multiply float32 weights


class ParamsError(RewindError):
    """params.yaml is unreadable or breaks a rule."""


class Strict(BaseModel):
    # No NaN or infinity anywhere: they would only surface as a crash deep in a stage.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DataParams(Strict):
    name: str
    split_seed: Seed
    test_fraction: Fraction
    validation_fraction: Fraction  # of the test split, held out for choices (budgets, winners)
    root: str | None  # the folder of a published dataset's files; null for digits
    # A dataset of your own (`name: package.module:load`) declares what models are built for:
    # the shape of one example and the number of classes (built-in datasets leave both out).
    input_shape: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] | None = None
    num_classes: Annotated[int, Field(ge=2)] | None = None


class ModelParams(Strict):
    name: str


class TrainParams(Strict):
    epochs: Annotated[int, Field(ge=1)]
    batch_size: Annotated[int, Field(ge=1)]
    lr: Annotated[float, Field(gt=0.0, le=FLOAT32_MAX)]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)]
    weight_decay: Annotated[float, Field(ge=0.0, le=FLOAT32_MAX)]
    nesterov: bool
    # lr as a function of the step: step decay at `milestones` (epochs) by `gamma`, cosine,
    # one-cycle or constant (rewind.schedule); warmup is linear over its steps
    schedule: ScheduleKind = "step"
    milestones: list[Annotated[int, Field(ge=1)]]
    gamma: Annotated[float, Field(gt=0.0, le=1.0)]
    warmup_epochs: Annotated[int, Field(ge=0)]
    # steps between epochs at which the dense run also keeps its weights: rewind points of
    # iteration budgets (a wr budget of `Nit` rewinds to step epochs · steps_per_epoch - N)
    rewind_iterations: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    device: Literal["cpu", "cuda", "auto"]
    augment: bool  # 4-pixel padded random crop and horizontal flip of every training batch
    precision: Literal["fp32", "bf16"]  # bf16: autocast forward pass (GPU speed; fp32 master weights)
    channels_last: bool  # conv weights in channels-last layout (GPU speed)
    # CPU threads of a stage's tensor maths; null: torch's default, one per core. Part of the
    # result: a float sum split over more threads is added in another order.
    threads: Annotated[int, Field(ge=1, le=1024)] | None

    def lr_schedule(self, steps_per_epoch: int) -> Schedule:
        """The dense run's lr(step), for a dataset of `steps_per_epoch` batches."""
        return Schedule(
            self.lr, self.epochs, steps_per_epoch, self.schedule, tuple(self.milestones), self.gamma, self.warmup_epochs
        )


class PruneParams(Strict):
    schedule: Literal["iterative", "oneshot"]
    fraction: Fraction
    sparsities: list[Fraction]
    method: Literal["magnitude", "random"]
    scope: Literal["global", "layer"]
    granularity: Literal["weight", "filter"]
    exclude: list[str]


class StrategyParams(Strict):
    weights: Literal["final", "rewind", "reinit"]
    rates: Literal["replay", "constant"]
    budget: Budget
    pruning: Literal["magnitude", "random"] | None = None  # overrides prune.method: a control
    # fresh: momentum starts at zero (rewind's default); restored: the momentum saved with the
    # start weights, as the paper's code does
    momentum: Literal["fresh", "restored"] = "fresh"
    # rates: constant only: retrain at this rate instead of the dense run's final one, lr(T-1)
    # (fine-tuning at a usable rate where the schedule ends near zero: cosine, one-cycle)
    lr: Annotated[float, Field(gt=0.0, le=FLOAT32_MAX)] | None = None


class ControlsParams(Strict):
    """Strategies retrained on another strategy's masks, round by round: `reinit` here is "the same
    mask, fresh weights" in every round, not a chain pruning its own retrained networks. One
    reference for all controls: dvc.yaml names the masks a control stage depends on as
    `${controls.masks_from}`, and DVC's templating cannot look a key up per matrix item."""

    masks_from: str  # a compared strategy: control round k retrains on its round-k masks
    strategies: list[str]


class SweepParams(Strict):
    """Accuracy against retraining budget, after one-shot pruning of the dense network."""

    strategies: Annotated[list[str], Field(min_length=1)]
    sparsities: Annotated[list[Fraction], Field(min_length=1)]
    budgets: Annotated[list[Budget], Field(min_length=1)]


class ExportParams(Strict):
    """What the `export` stage writes beyond every round's compact file (and, under filter pruning,
    its slimmed network): ONNX, which costs a second or more a seed, only for the rounds named here."""

    onnx: list[str]  # `lrr-round5`: that round of lrr; `lrr`: every round of lrr


ONNX_ITEM = re.compile(r"^(?P<strategy>[a-z][a-z0-9_]*)(-round(?P<round>\d+))?$")


class RoundParams(Strict):
    id: Annotated[int, Field(ge=0)]
    prev: str


class Params(Strict):
    seeds: Annotated[list[Seed], Field(min_length=1)]
    data: DataParams
    model: ModelParams
    train: TrainParams
    prune: PruneParams
    strategies: dict[str, StrategyParams]
    compare: list[str]
    controls: ControlsParams
    rounds: list[RoundParams]
    sweep: SweepParams
    export: ExportParams

    def shapes(self) -> tuple[tuple[int, ...], int]:
        """What the models are built for: one example's shape and the number of classes."""
        if self.data.name in SHAPES:
            return SHAPES[self.data.name]
        assert self.data.input_shape is not None and self.data.num_classes is not None  # validated
        return tuple(self.data.input_shape), self.data.num_classes

    @property
    def retrained(self) -> list[str]:
        """Every strategy with rounds: the compared ones (they prune), then the controls."""
        return [*self.compare, *self.controls.strategies]

    def compared_strategy(self, name: str) -> Strategy:
        """A strategy of `compare`, the ones with prune and retrain stages."""
        if name not in self.compare:
            raise ParamsError(f"params.yaml: compare: strategy {name!r} is not compared; compared: {self.compare}")
        return self.strategy(name)

    def retrained_strategy(self, name: str) -> Strategy:
        """A compared strategy or a control: the ones with a retraining stage per round."""
        if name not in self.retrained:
            raise ParamsError(
                f"params.yaml: compare: strategy {name!r} is neither compared nor a control; "
                f"compared: {self.compare}, controls: {self.controls.strategies}"
            )
        return self.strategy(name)

    def masks_strategy(self, name: str) -> str:
        """Whose masks the strategy retrains on: its own, or for a control `controls.masks_from`'s."""
        return self.controls.masks_from if name in self.controls.strategies else name

    def swept_strategy(self, name: str) -> Strategy:
        """A strategy of `sweep.strategies`, the ones with a sweep stage."""
        if name not in self.sweep.strategies:
            raise ParamsError(
                f"params.yaml: sweep.strategies: strategy {name!r} is not swept; swept: {self.sweep.strategies}"
            )
        return self.strategy(name)

    def strategy(self, name: str) -> Strategy:
        """The strategy `strategies.<name>` defines, as the library takes it."""
        spec = self.strategies[name]
        return Strategy(name, spec.weights, spec.rates, Duration.parse(spec.budget), spec.momentum, spec.lr)

    def still_rate(self, name: str, steps_per_epoch: int, budget: int | str | None = None) -> float | None:
        """The largest rate strategy `name` retrains at (at `budget`, or its own) when every one is
        too small to move the weights (`rewind.strategies.too_small_to_train`); None otherwise."""
        strategy = self.strategy(name)
        if budget is not None:
            strategy = dataclasses.replace(strategy, budget=Duration.parse(budget))
        schedule = self.train.lr_schedule(steps_per_epoch)
        retraining = resolve(strategy, schedule)
        return max(retraining.rates) if too_small_to_train(retraining, schedule) else None

    def pruning_method(self, strategy: str) -> str:
        """The strategy's own pruning method if it sets one (a control), else prune.method."""
        return self.strategies[strategy].pruning or self.prune.method

    def onnx_rounds(self, strategy: str) -> set[int]:
        """The rounds of `strategy` that `export.onnx` asks to be exported to ONNX."""
        rounds = set()
        for item in self.export.onnx:
            found = ONNX_ITEM.match(item)
            if found and found["strategy"] == strategy:
                rounds |= {spec.id for spec in self.rounds} if found["round"] is None else {int(found["round"])}
        return rounds

    def round(self, index: int) -> RoundParams:
        if not 0 <= index < len(self.rounds):
            raise ParamsError(f"params.yaml: rounds: no round {index}; rounds are 0 … {len(self.rounds) - 1}")
        return self.rounds[index]


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> object:
    """The YAML document at `path`; a ParamsError naming the file for anything unreadable."""
    try:
        return yaml.load(read_file(path).decode("utf-8"), Loader=UniqueKeyLoader)  # a SafeLoader
    except RewindError as err:  # missing, unreadable, not a regular file
        raise ParamsError(str(err)) from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    except RecursionError:
        raise ParamsError(f"{path}: nested too deeply") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ParamsError(f"{path}: not valid YAML{where}: {problem}") from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise ParamsError with one line naming the key."""
    return params_from_mapping(read_yaml(path), path)


BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _describe(err: ValidationError) -> str:
    """All of pydantic's complaints on one line, each as `dotted.key: message`."""
    parts = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (a typo?)"
        elif item["type"] == "missing":
            message = "missing key"
        elif item["type"] == "value_error":
            message = f"{message.removeprefix('Value error, ')} (got {item['input']!r})"
        elif item["type"] in BOUNDS:
            (limit,) = item["ctx"].values()
            shown = f"{limit:g}" if isinstance(limit, float) else limit
            message = f"must be {BOUNDS[item['type']]} {shown} (got {item['input']!r})"
        else:
            message = f"{message} (got {item['input']!r})"
        parts.append(f"{key}: {message}")
    return " ".join("; ".join(parts).split())


def consistency_problems(params: Params) -> list[str]:
    """Rules that span keys; each problem is `key: what is wrong`."""
    problems = []
    epochs = params.train.epochs
    problems += _plugin_problems(params)
    if params.data.name in FOLDER_DATASETS and not params.data.root:
        problems.append(f"data.root: {params.data.name} is read from a folder; name the folder holding its files")
    if params.data.name == "digits" and params.data.root is not None:
        problems.append("data.root: digits ships with scikit-learn and reads no folder; set it to null")
    if params.prune.granularity == "filter" and params.prune.scope != "layer":
        problems.append(
            "prune.granularity: filter pruning removes a fraction of each layer's filters; set prune.scope: layer"
        )
    for milestone in params.train.milestones:
        if milestone >= epochs:
            problems.append(f"train.milestones: {milestone} is not below train.epochs ({epochs})")
    if params.train.milestones != sorted(set(params.train.milestones)):
        problems.append("train.milestones: must be strictly increasing")
    if params.train.nesterov and params.train.momentum == 0:
        problems.append("train.nesterov: Nesterov momentum needs train.momentum > 0")
    if params.train.warmup_epochs >= epochs:
        problems.append(f"train.warmup_epochs: {params.train.warmup_epochs} must be below train.epochs ({epochs})")
    if params.data.name == "digits":
        try:
            test_images = split_sizes(DIGITS_IMAGES, SHAPES["digits"][1], params.data.test_fraction)[1]
        except RewindError as err:
            problems.append(f"data.test_fraction: {err}")
        else:
            try:
                validation_size(test_images, params.data.validation_fraction)
            except RewindError as err:
                problems.append(f"data.validation_fraction: {err}")
    for name, spec in params.strategies.items():
        if not STRATEGY_NAME.match(name):
            problems.append(f"strategies.{name}: a name is lowercase letters, digits and _, starting with a letter")
        elif name in RESERVED_NAMES:
            problems.append(f"strategies.{name}: the name is taken by the dense network; choose another")
        problems += _budget_problems(f"strategies.{name}.budget", spec.budget, spec.weights == "rewind", params)
        if spec.momentum == "restored" and spec.weights == "reinit":
            problems.append(f"strategies.{name}.momentum: fresh weights have no momentum to restore; use fresh")
        if spec.lr is not None and spec.rates != "constant":
            problems.append(
                f"strategies.{name}.lr: a stated rate is for rates: constant; replayed rates are the schedule's"
            )
    if not params.compare:
        problems.append("compare: name at least one strategy")
    for name in params.compare:
        if name not in params.strategies:
            problems.append(f"compare: unknown strategy {name!r}; defined in strategies: {sorted(params.strategies)}")
    if len(set(params.compare)) != len(params.compare):
        problems.append("compare: a strategy is listed twice")
    problems += _controls_problems(params)
    if len(set(params.seeds)) != len(params.seeds):
        problems.append("seeds: a seed is listed twice")
    for name in params.sweep.strategies:
        if name not in params.strategies:
            problems.append(
                f"sweep.strategies: unknown strategy {name!r}; defined in strategies: {sorted(params.strategies)}"
            )
    rewinds = any(params.strategies[n].weights == "rewind" for n in params.sweep.strategies if n in params.strategies)
    for budget in params.sweep.budgets:
        problems += _budget_problems("sweep.budgets", budget, rewinds, params)
    problems += _schedule_problems(params)
    for key, values in (
        ("sweep.budgets", params.sweep.budgets),
        ("sweep.sparsities", params.sweep.sparsities),
        ("sweep.strategies", params.sweep.strategies),
    ):
        if len(set(values)) != len(values):
            problems.append(f"{key}: a value is listed twice")
    problems += _round_problems(params)
    problems += _exclude_problems(params)
    problems += _export_problems(params)
    return problems


def rate_warnings(params: Params) -> list[str]:
    """Strategies that will retrain at rates too small to move the weights (fine-tuning at the
    final rate of a schedule that ends near zero), each as one line naming the key and the remedy.
    Not errors: such a fine-tuning is the paper's definition, and the report says what it did.
    For a dataset of its own the steps per epoch are unknown here: one step per epoch ends every
    schedule on its largest final rate, so nothing is flagged that more steps would not flag too."""
    per_epoch = known_steps_per_epoch(params) or 1
    checks = [(name, None) for name in dict.fromkeys(params.retrained)] + [
        (name, budget) for name in params.sweep.strategies for budget in params.sweep.budgets
    ]
    warned, lines = set(), []
    for name, budget in checks:
        rate = params.still_rate(name, per_epoch, budget)
        if rate is None or name in warned:
            continue
        warned.add(name)
        where = "" if budget is None else f" at sweep budget {budget}"
        lines.append(
            f"strategies.{name}: its largest rate{where}, {rate:.2g}, is below {STILL_FRACTION:g} of train.lr "
            f"({params.train.lr:g}): it cannot move the weights and will score as the pruned network unretrained. "
            + remedy(params, name)
        )
    return lines


def remedy(params: Params, name: str) -> str:
    """How to retrain strategy `name` at a usable rate, as the params that do it."""
    spec = params.strategies[name]
    if spec.rates == "replay":
        return "A larger budget replays larger rates of the schedule."
    return (
        f"To retrain at a usable rate, compare a strategy that states one, e.g. `{name}_lr: {{weights: {spec.weights}, "
        f"rates: constant, budget: {spec.budget}, lr: {params.train.lr / 100:g}}}` "
        "(the paper fine-tunes at a hundredth of its base rate)."
    )


def known_steps_per_epoch(params: Params) -> int | None:
    """Steps in one epoch, where the training split's size is known without loading the data:
    the built-in datasets (digits by its split); None for a dataset of your own."""
    if params.data.name == "digits":
        try:
            train = split_sizes(DIGITS_IMAGES, SHAPES["digits"][1], params.data.test_fraction)[0]
        except RewindError:
            return None  # reported as a data.test_fraction problem
    else:
        train = TRAIN_EXAMPLES.get(params.data.name)
    return None if train is None else steps_per_epoch(train, params.train.batch_size)


def _budget_problems(key: str, value: int | str, rewinds: bool, params: Params) -> list[str]:
    """A budget must fit in the dense run, and a rewinding strategy's rewind point must be kept:
    an epoch's end, or a step train.rewind_iterations lists."""
    budget, epochs = Duration.parse(value), params.train.epochs
    if budget.unit == "epochs":
        return [f"{key}: {value} is larger than train.epochs ({epochs})"] if budget.amount > epochs else []
    per_epoch = known_steps_per_epoch(params)
    if per_epoch is None:
        return []  # checked by the stage, once the data are loaded
    total = epochs * per_epoch
    if budget.amount > total:
        return [f"{key}: {value} is more than the dense run's {total} steps ({epochs} epochs of {per_epoch})"]
    rewind_step = total - budget.amount
    if rewinds and rewind_step % per_epoch and rewind_step not in params.train.rewind_iterations:
        return [
            f"{key}: {value} rewinds to step {rewind_step}, "
            "which the dense run keeps only if train.rewind_iterations lists it"
        ]
    return []


def _schedule_problems(params: Params) -> list[str]:
    train, problems = params.train, []
    if train.schedule != "step" and train.milestones:
        problems.append(f"train.milestones: only the step schedule has milestones; {train.schedule} takes []")
    if train.schedule == "onecycle" and train.warmup_epochs:
        problems.append("train.warmup_epochs: one-cycle rises from lr/25 by itself; set 0")
    if len(set(train.rewind_iterations)) != len(train.rewind_iterations):
        problems.append("train.rewind_iterations: a step is listed twice")
    per_epoch = known_steps_per_epoch(params)
    if per_epoch is not None:
        total = train.epochs * per_epoch
        problems += [
            f"train.rewind_iterations: {step} is not inside the dense run's {total} steps"
            for step in train.rewind_iterations
            if step >= total
        ]
        if train.schedule == "onecycle" and total < 4:
            problems.append(f"train.schedule: one-cycle needs at least 4 steps; the dense run has {total}")
    return problems


def _plugin_problems(params: Params) -> list[str]:
    """Names are built-ins or import paths that import (rewind.plugins); a dataset of your own
    declares its example shape and class count, a built-in one must not."""
    problems, data = [], params.data
    if is_import_path(data.name):
        try:
            load_callable(data.name)
        except RewindError as err:
            problems.append(f"data.name: {err}")
        for key in ("input_shape", "num_classes"):
            if getattr(data, key) is None:
                problems.append(f"data.{key}: a dataset of your own ({data.name}) must declare it")
    else:
        if data.name not in DATASETS:
            problems.append(
                f"data.name: unknown dataset {data.name!r}; known: {list(DATASETS)}, or package.module:function"
            )
        for key in ("input_shape", "num_classes"):
            if getattr(data, key) is not None:
                problems.append(f"data.{key}: {data.name} is built in and its shape known; leave the key out")
    try:
        builder(params.model.name)
    except RewindError as err:
        problems.append(f"model.name: {err}")
    return problems


def _controls_problems(params: Params) -> list[str]:
    """Controls take their masks from a compared strategy and prune nothing themselves; a compared
    strategy with fresh weights would prune its own chain, which is not the "same mask" control."""
    controls, problems = params.controls, []
    for name in params.compare:
        if name in params.strategies and params.strategies[name].weights == "reinit":
            problems.append(
                f"compare: {name} has weights: reinit; a fresh-weights control retrains on another strategy's "
                "masks: list it in controls.strategies instead"
            )
    if controls.strategies and controls.masks_from not in params.compare:
        problems.append(
            f"controls.masks_from: {controls.masks_from!r} is not a compared strategy; compared: {params.compare}"
        )
    for name in controls.strategies:
        if name not in params.strategies:
            problems.append(
                f"controls.strategies: unknown strategy {name!r}; defined in strategies: {sorted(params.strategies)}"
            )
        elif name in params.compare:
            problems.append(f"controls.strategies: {name} is compared too; a strategy either prunes or is a control")
        elif params.strategies[name].pruning is not None:
            problems.append(
                f"strategies.{name}.pruning: {name} is a control: it prunes nothing, "
                f"it retrains on {controls.masks_from}'s masks"
            )
    if len(set(controls.strategies)) != len(controls.strategies):
        problems.append("controls.strategies: a strategy is listed twice")
    return problems


def _exclude_problems(params: Params) -> list[str]:
    """Every prune.exclude glob must match a prunable weight of the model (a typo would otherwise
    exclude nothing, silently), and some weight must be left to prune."""
    try:
        builder(params.model.name)
        shape, classes = params.shapes()
    except (RewindError, AssertionError, KeyError):  # reported above: an unknown name, a missing shape
        return []
    try:
        names = prunable_names(architecture(params.model.name, shape, classes))
    except RewindError as err:
        return [f"model.name: {err}"]
    except Exception as err:  # a model of your own that cannot be built for these inputs
        return [f"model.name: {params.model.name} cannot be built for inputs {shape}: {type(err).__name__}: {err}"]
    problems = [
        f"prune.exclude: {glob!r} matches no prunable weight; they are {names}"
        for glob in params.prune.exclude
        if not any(excluded(name, [glob]) for name in names)
    ]
    if all(excluded(name, params.prune.exclude) for name in names):
        problems.append(f"prune.exclude: excludes every prunable weight ({names}); nothing is left to prune")
    return problems


def _round_problems(params: Params) -> list[str]:
    rounds, prune = params.rounds, params.prune
    if not rounds:
        return ["rounds: at least one round is needed"]
    problems = []
    for index, item in enumerate(rounds):
        expected = DENSE_PREV if index == 0 or prune.schedule == "oneshot" else f"round-{index - 1}"
        if item.id != index:
            problems.append(f"rounds.{index}.id: is {item.id}, expected {index} (ids are 0, 1, 2, … in order)")
        elif item.prev != expected:
            problems.append(
                f"rounds.{index}.prev: is {item.prev!r}, expected {expected!r} for {prune.schedule} pruning"
            )
    if prune.schedule == "oneshot":
        if len(prune.sparsities) != len(rounds):
            problems.append(
                f"prune.sparsities: {len(prune.sparsities)} targets for {len(rounds)} rounds; "
                "one-shot pruning needs one per round"
            )
        if prune.sparsities != sorted(set(prune.sparsities)):
            problems.append("prune.sparsities: must be strictly increasing")
    return problems


def _export_problems(params: Params) -> list[str]:
    """Every `export.onnx` item names a compared strategy (the exported ones), and a round that exists."""
    problems = []
    for item in params.export.onnx:
        found = ONNX_ITEM.match(item)
        if found is None:
            problems.append(f"export.onnx: {item!r} is neither a strategy (lrr) nor one of its rounds (lrr-round5)")
        elif found["strategy"] not in params.compare:
            problems.append(f"export.onnx: {item!r}: {found['strategy']} is not compared; compared: {params.compare}")
        elif found["round"] is not None and int(found["round"]) >= len(params.rounds):
            last = len(params.rounds) - 1
            problems.append(f"export.onnx: {item!r}: no round {found['round']}; rounds are 0 … {last}")
    if len(set(params.export.onnx)) != len(params.export.onnx):
        problems.append("export.onnx: an item is listed twice")
    return problems


def params_from_mapping(raw: object, source: Path | str = PARAMS_FILE) -> Params:
    """Validate params given as data, as load_params validates the file: the Prefect flow checks
    params.yaml with a run's overrides applied in memory, before it writes anything. A ParamsError
    names `source` and the key, in one line."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(f"{source}: {_describe(err)}") from None
    except RecursionError:
        raise ParamsError(f"{source}: nested too deeply") from None
    problems = consistency_problems(params)
    if problems:
        raise ParamsError(f"{source}: " + "; ".join(problems))
    return params
