"""Stage `report`: the comparison people read — its first line the answer (the paper's claim, the
verdict and its two intervals), then tables with mean ± std over seeds, the derived answers (winner
per sparsity, safe sparsity, size and FLOPs), CSVs for `dvc plots`, and PNGs — and the headline
metrics, the few numbers `dvc exp show`, `dvc metrics diff` and VS Code show.

Every choice (the bold cell, the winner, the safe sparsity, the best budget) is made on the
validation split and reported on test; a tie there is reported as a tie. What would make a number
mean less than it seems is said beside it: a fine-tuning whose rate cannot move the weights,
rewinding and learning-rate rewinding starting from nearly the same weights, a sparsity that
counts only the prunable weights. Every paragraph is one line: Prefect's artifact shows a hard
line break as a new line."""

import argparse
import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rewind import RewindError
from rewind.checkpoint import atomic_write_bytes, load_tensors, read_file
from rewind.metrics import relative_distance
from rewind.schedule import Duration
from rewind.stats import Difference, Summary, best, paired_difference, safe_sparsity, summarize, winner
from rewind.strategies import STILL_FRACTION, resolve
from stages.shared import layout
from stages.shared.entry import run_stage
from stages.shared.files import dataset_steps_per_epoch, json_bytes
from stages.shared.params import Params, remedy

EMPTY = "—"  # no value: never "none", which names a strategy
CLOSE_STARTS = 0.02  # start weights this close (relative L2 distance) retrain nearly alike


def read_json(path: Path) -> dict:
    if not Path(path).exists():
        raise RewindError(f"{path}: file not found; run the stage that writes it first")
    try:
        return json.loads(read_file(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RewindError(f"{path}: not valid JSON ({err})") from None


def accuracy_summaries(
    params: Params, evaluations: dict, key: str = "accuracy"
) -> tuple[Summary, dict[str, dict[int, Summary]]]:
    """Dense and per-(strategy, round) `key` (test `accuracy` or `val_accuracy`) over seeds, in
    the seeds' order (for paired differences), checked to cover every seed."""
    path = layout.EVALUATIONS

    def summary(seeds: object, what: str) -> Summary:
        try:
            return summarize([float(seeds[f"seed{s}"][key]) for s in params.seeds])
        except (KeyError, TypeError, ValueError):
            raise RewindError(f"{path}: no {key} for every seed of {what}") from None

    dense = summary(evaluations.get("dense"), "dense")
    rounds = {
        s: {
            spec.id: summary((evaluations.get(s) or {}).get(f"round{spec.id}"), f"{s} round{spec.id}")
            for spec in params.rounds
        }
        for s in params.retrained
    }
    return dense, rounds


def test_images(evaluations: dict) -> int:
    """How many test images every accuracy rests on (one image is 100/N points of one seed's)."""
    try:
        return int(next(iter(evaluations["dense"].values()))["test_examples"])
    except (KeyError, TypeError, ValueError, StopIteration):
        raise RewindError(f"{layout.EVALUATIONS}: no test_examples for the dense network") from None


def sparsities(params: Params, evaluations: dict) -> tuple[dict[int, float], dict[int, float]]:
    """Each round's sparsity of the prunable weights, and of all parameters (biases, norms and
    excluded layers counted as kept). Every strategy prunes a round to the same count, so every
    seed's masks must agree: one that does not (edited by hand, pruned under other params) is
    refused, naming its file, rather than averaged into a sparsity no network has."""
    prunable, network = {}, {}
    for spec in params.rounds:
        found = {}
        for s in params.retrained:
            for seed in params.seeds:
                try:
                    measured = evaluations[s][f"round{spec.id}"][f"seed{seed}"]
                    found[s, seed] = (float(measured["sparsity"]), float(measured["network_sparsity"]))
                except (KeyError, TypeError, ValueError):
                    raise RewindError(f"{layout.EVALUATIONS}: no sparsity for {s} round{spec.id} seed{seed}") from None
        common = Counter(found.values()).most_common(1)[0][0]
        for (s, seed), value in found.items():
            if value != common:
                raise RewindError(
                    f"{layout.mask(layout.round_dir(s, spec.id), seed)}: prunes {100 * value[0]:.2f}% of the "
                    f"prunable weights where round {spec.id}'s other masks prune {100 * common[0]:.2f}%: refused, "
                    "not averaged; prune that round again"
                )
        prunable[spec.id], network[spec.id] = common
    return prunable, network


def cell(summary: Summary) -> str:
    return f"{100 * summary.mean:.2f} ± {100 * summary.std:.2f}"


def name(strategy: str) -> str:
    """A strategy named in running text or a table cell: code, so `none` reads as a name."""
    return f"`{strategy}`"


def accuracy_table(params: Params, rounds: dict, val_rounds: dict, sparsity: dict[int, float]) -> str:
    """Test accuracy per round and strategy; bold: the best on validation (all of them, if tied)."""
    lines = ["| round | sparsity | " + " | ".join(params.retrained) + " |", "|" + "---:|" * (2 + len(params.retrained))]
    for spec in params.rounds:
        chosen = best({s: val_rounds[s][spec.id] for s in params.retrained})
        cells = [
            f"**{cell(rounds[s][spec.id])}**" if s in chosen else cell(rounds[s][spec.id]) for s in params.retrained
        ]
        lines.append(f"| {spec.id} | {100 * sparsity[spec.id]:.2f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table(params: Params, rounds: dict, dense: Summary, sparsity: dict[int, float], per_epoch: int) -> str:
    """Ours beside the paper's median (min-max over its trials) where the paper measured the same
    thing (stages.paper), after a line saying what matched, or why nothing did."""
    from stages import paper

    differences = paper.differences(params, per_epoch)
    if differences:
        return (
            "Nothing is set beside the paper's numbers: it published CIFAR-10 ResNet-20/56/110 runs, and this run "
            "differs from them in " + "; ".join(differences) + "."
        )
    published = paper.pruned(params, sparsity, per_epoch)
    theirs = paper.dense(params, per_epoch)
    redefined = [
        why for s in params.retrained if s in paper.PAPER_STRATEGIES and (why := paper.strategy_difference(params, s))
    ]
    matched = (
        f"Matched: {params.model.name} on CIFAR-10, global magnitude pruning of single weights (the paper's "
        f'"Unstructured", {params.prune.schedule}) and the paper\'s dense run (its train settings, '
        f"{paper.PAPER_STEPS_PER_EPOCH} steps an epoch: a budget of t epochs rewinds to the same epoch, "
        f"{params.train.epochs} − t); per row, the strategy, density and budget."
        + (" Not compared, defined otherwise than the paper's: " + "; ".join(redefined) + "." if redefined else "")
    )
    lines = [
        matched,
        "",
        "| sparsity | strategy | ours | paper: median (min–max) | trials | ours − paper |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    if theirs is not None:
        lines.append(
            f"| 0.00% | dense | {cell(dense)} | {published_cell(theirs)} | {theirs.trials} | "
            f"{100 * (dense.mean - theirs.median):+.2f} |"
        )
    rows = len(lines)
    for spec in params.rounds:
        for s in params.retrained:
            if (s, spec.id) in published:
                found = published[s, spec.id]
                lines.append(
                    f"| {100 * sparsity[spec.id]:.2f}% | {name(s)} | {cell(rounds[s][spec.id])} | "
                    f"{published_cell(found)} | {found.trials} | "
                    f"{100 * (rounds[s][spec.id].mean - found.median):+.2f} |"
                )
    if len(lines) == rows:
        none_ran = "the paper ran none of these strategy, budget and density combinations"
        lines.append(f"| {EMPTY} | {EMPTY} | {EMPTY} | {none_ran} | {EMPTY} | {EMPTY} |")
    return "\n".join(lines)


def published_cell(found) -> str:
    return f"{100 * found.median:.2f} ({100 * found.low:.2f}–{100 * found.high:.2f})"


def controls_line(params: Params) -> str:
    """Which masks the controls retrain, so "the same mask" is a stated fact, not an assumption."""
    if not params.controls.strategies:
        return ""
    names = ", ".join(params.controls.strategies)
    source = params.controls.masks_from
    return f" Controls ({names}) retrain each round on {source}'s masks of that round, byte for byte."


def reference(names: list[str]) -> str:
    """What the other strategies are compared with: fine-tuning, the standard, when present."""
    return "ft" if "ft" in names else names[0]


def difference_cell(difference: Difference, bold: bool = True) -> str:
    """`+1.63 [+0.20, +3.06]` in points; bold when the interval excludes zero (and `bold`)."""
    if difference.n < 2:
        return f"{100 * difference.mean:+.2f} (1 seed)"
    text = f"{100 * difference.mean:+.2f} [{100 * difference.low:+.2f}, {100 * difference.high:+.2f}]"
    return f"**{text}**" if bold and difference.significant else text


def differences_table(params: Params, rounds: dict, sparsity: dict[int, float], per_epoch: int) -> str:
    """Per round, every strategy's test accuracy minus the reference's, paired by seed, with its
    95% interval; a strategy that runs the reference's very plan is marked, not tested."""
    base = reference(params.retrained)
    others = [s for s in params.retrained if s != base]
    lines = [
        "| round | sparsity | " + " | ".join(f"{s} − {base}" for s in others) + " |",
        "|---:|---:|" + "---:|" * len(others),
    ]
    for spec in params.rounds:
        cells = [
            f"≡ {base} (same plan)"
            if same_plan(params, per_epoch, s, base)
            else difference_cell(paired_difference(rounds[s][spec.id], rounds[base][spec.id]))
            for s in others
        ]
        lines.append(f"| {spec.id} | {100 * sparsity[spec.id]:.2f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def winners_table(params: Params, rounds: dict, val_rounds: dict, sparsity: dict[int, float]) -> str:
    lines = [
        "| sparsity | winner (validation) | runner-up | lead on test, 95% CI | supported? |",
        "|---:|---|---|---:|---|",
    ]
    for spec in params.rounds:
        where = f"{100 * sparsity[spec.id]:.2f}%"
        verdict = winner(
            {s: val_rounds[s][spec.id] for s in params.retrained}, {s: rounds[s][spec.id] for s in params.retrained}
        )
        if verdict.winner is None:
            tied = ", ".join(map(name, verdict.tied))
            lines.append(f"| {where} | tie: {tied} | {EMPTY} | {EMPTY} | no: a tie |")
            continue
        if verdict.lead is None:
            lines.append(f"| {where} | {name(verdict.winner)} | {EMPTY} | {EMPTY} | {EMPTY} |")
            continue
        supported = (
            "no verdict (1 seed)"
            if verdict.lead.n < 2
            else "yes"
            if verdict.lead.low > 0
            else "no: runner-up ahead"
            if verdict.lead.high < 0
            else "no"
        )
        lines.append(
            f"| {where} | {name(verdict.winner)} | {name(verdict.runner_up)} | "
            f"{difference_cell(verdict.lead)} | {supported} |"
        )
    return "\n".join(lines)


def paper_claim(params: Params, rounds: dict) -> dict[str, Difference] | None:
    """wr - ft and lrr - ft at the highest sparsity, paired by seed: what the paper's finding is
    judged on; None when ft, wr or lrr is not compared."""
    if not {"ft", "wr", "lrr"} <= set(params.retrained):
        return None
    last = params.rounds[-1].id
    return {s: paired_difference(rounds[s][last], rounds["ft"][last]) for s in ("wr", "lrr")}


def claim_holds(gains: dict[str, Difference]) -> bool | None:
    """Whether both intervals lie above zero; None with one seed (no interval, no verdict)."""
    if any(gain.n < 2 for gain in gains.values()):
        return None
    return all(gain.low > 0 for gain in gains.values())


def ft_stalled(params: Params, rounds: dict, sparsity: dict[int, float], per_epoch: int) -> list[str]:
    """Why fine-tuning did not train, each reason a phrase (none: it did): its rates are too small to
    move the weights (`rewind.strategies.too_small_to_train`), or at the highest sparsity it scores
    as `none`, the pruned network not retrained (their paired interval includes zero). Rewinding
    beating such a fine-tuning beats no retraining, not the paper's fine-tuning."""
    if "ft" not in params.retrained:
        return []
    reasons = []
    rate = params.still_rate("ft", per_epoch)
    if rate is not None:
        reasons.append(
            f"its rate, {rate:.2g}, is below {STILL_FRACTION:g} of train.lr ({params.train.lr:g}), too small to "
            "move the weights"
        )
    last = params.rounds[-1].id
    none = params.strategies.get("none")
    if "none" in params.retrained and none.weights == "final" and Duration.parse(none.budget).amount == 0:
        gap = paired_difference(rounds["ft"][last], rounds["none"][last])
        if gap.mean == 0 or (gap.n > 1 and not gap.significant):
            reasons.append(
                f"it scores as `none`, the pruned network not retrained (ft − none {difference_cell(gap, bold=False)} "
                f"points at {100 * sparsity[last]:.2f}%)"
            )
    return reasons


def rewinds_against_lrr(params: Params, names: list[str]) -> bool:
    """Whether `names` hold wr and lrr as the paper defines them: rewound and final start weights."""
    if not {"wr", "lrr"} <= set(names):
        return False
    return params.strategies["wr"].weights == "rewind" and params.strategies["lrr"].weights == "final"


def start_distances(params: Params, per_epoch: int, budgets: list[int | str]) -> dict[int | str, list[float]]:
    """Per budget, seed by seed: how far the dense weights wr rewinds to (step T - budget) lie from
    the final ones lrr starts from, as ‖W_(T-t) - W_T‖ / ‖W_T‖ over every floating tensor. Where
    the end of the dense run barely moves the weights, wr and lrr start almost alike, and so
    retrain almost alike: their tie then says nothing about the paper's "lrr matches or beats wr"."""
    schedule = params.train.lr_schedule(per_epoch)
    final = {seed: load_tensors(layout.checkpoint(seed, params.train.epochs))[0] for seed in params.seeds}
    distances = {}
    for budget in dict.fromkeys(budgets):
        wr = dataclasses.replace(params.strategy("wr"), budget=Duration.parse(budget))
        step = resolve(wr, schedule).rewind_step
        assert step is not None  # wr rewinds (rewinds_against_lrr)
        distances[budget] = [
            relative_distance(load_tensors(layout.rewind_point(seed, step, per_epoch)[0])[0], final[seed])
            for seed in params.seeds
        ]
    return distances


def percent_range(values: list[float]) -> str:
    """A range of fractions in %, low to high (one value when both round alike)."""
    low, high = min(values), max(values)
    return f"{100 * low:.2f}%" if f"{100 * low:.2f}" == f"{100 * high:.2f}" else f"{100 * low:.2f}–{100 * high:.2f}%"


def caveats(
    params: Params,
    rounds: dict,
    sparsity: dict[int, float],
    network: dict[int, float],
    stalled: list[str],
    distances: dict[int | str, list[float]],
    per_epoch: int,
) -> list[str]:
    """What would make a number mean less than it seems, one line each (none: nothing to add)."""
    lines = []
    if stalled:
        lines.append(
            "**Fine-tuning did not train**: " + "; ".join(stalled) + ". ft follows the paper's definition (the "
            "dense run's final rate), so rewinding here is compared with a network that was not retrained. "
            + (stated_rate_comparison(params, rounds, sparsity, per_epoch) or remedy(params, "ft"))
        )
    if {"ft", "lrr"} <= set(params.retrained) and same_plan(params, per_epoch, "lrr", "ft"):
        lines.append(
            f"**lrr retrains exactly as ft**: its budget ({describe(params.strategies['lrr'].budget)}) replays only "
            "the final rate, from the same weights, so lrr − ft is zero by construction, not a finding."
        )
    wr_budget = params.strategies["wr"].budget if "wr" in params.strategies else None
    if wr_budget in distances and max(distances[wr_budget]) < CLOSE_STARTS:
        same = [
            f"{100 * sparsity[spec.id]:.2f}%"
            for spec in params.rounds
            if rounds["wr"][spec.id].values == rounds["lrr"][spec.id].values
        ]
        identical = f" Their test accuracies are identical seed by seed at {', '.join(same)}." if same else ""
        lines.append(
            f"**wr and lrr start from nearly the same weights**: the dense weights wr rewinds to (budget "
            f"{describe(wr_budget)}) lie {percent_range(distances[wr_budget])} from the final ones lrr starts from "
            f"(relative L2 distance, by seed; below {100 * CLOSE_STARTS:g}%), so the two retrain almost alike."
            f"{identical} "
            'A tie between them here is no evidence for or against the paper\'s "lrr matches or beats wr".'
        )
    if params.prune.exclude:
        last = params.rounds[-1].id
        lines.append(
            "**Sparsity counts the prunable weights**: prune.exclude keeps "
            f"{', '.join(map(name, params.prune.exclude))} whole, so {100 * sparsity[last]:.2f}% of the prunable "
            f"weights is {100 * network[last]:.2f}% of all parameters; the size table counts every parameter."
        )
    return lines


def stated_rate_comparison(params: Params, rounds: dict, sparsity: dict[int, float], per_epoch: int) -> str:
    """wr and lrr against each compared fine-tuning at a stated rate that can train (the remedy for
    an ft that cannot), paired by seed at the highest sparsity; empty when there is none."""
    last = params.rounds[-1].id
    found = []
    for s in params.retrained:
        spec = params.strategies[s]
        if s == "ft" or (spec.weights, spec.rates) != ("final", "constant") or spec.lr is None:
            continue
        if Duration.parse(spec.budget).amount == 0 or params.still_rate(s, per_epoch) is not None:
            continue
        gains = [
            f"{r} − {s} {difference_cell(paired_difference(rounds[r][last], rounds[s][last]), bold=False)}"
            for r in ("wr", "lrr")
            if r in params.retrained
        ]
        found.append(
            f"Fine-tuning at a stated rate, {name(s)} (lr {spec.lr:g}): "
            f"{cell(rounds[s][last])} at {100 * sparsity[last]:.2f}%"
            + (f"; {' and '.join(gains)} points." if gains else ".")
        )
    return " ".join(found)


def first_line(
    params: Params, rounds: dict, sparsity: dict[int, float], network: dict[int, float], stalled: list[str]
) -> str:
    """The report's answer, on its first line: the paper's claim at the highest sparsity, the
    verdict and the two paired intervals (wr - ft, lrr - ft)."""
    gains = paper_claim(params, rounds)
    if gains is None:
        return (
            "The paper's claim (both rewinding strategies beat fine-tuning) is not checked: "
            "`compare` lacks ft, wr or lrr."
        )
    last = params.rounds[-1].id
    where = f"{100 * sparsity[last]:.2f}% sparsity ({100 * network[last]:.2f}% of all parameters)"
    holds = claim_holds(gains)
    seeds = len(params.seeds)
    if holds is None:
        return (
            f"**The paper's claim cannot be judged** at {where}: one seed gives no interval "
            f"(wr − ft {100 * gains['wr'].mean:+.2f}, lrr − ft {100 * gains['lrr'].mean:+.2f} points); add seeds."
        )
    intervals = (
        f"wr − ft {difference_cell(gains['wr'], bold=False)} and lrr − ft {difference_cell(gains['lrr'], bold=False)} "
        f"points (mean paired difference, 95% interval, {seeds} seeds)"
    )
    if stalled:
        verdict = (
            "holds only against a fine-tuning that did not train"
            if holds
            else "is not supported, and fine-tuning did not train"
        )
        return (
            f"**The paper's claim {verdict}** at {where}: {intervals} compare rewinding with a network not retrained; "
            f"ft: {stalled[0]}."
        )
    if holds:
        return f"**The paper's claim holds** at {where}: both rewinding strategies beat fine-tuning, {intervals}."
    return (
        f"**The paper's claim is not supported** at {where}: it needs both rewinding strategies above fine-tuning; "
        f"{intervals}."
    )


def verdict_detail(params: Params, rounds: dict) -> str:
    """How the first line's verdict is reached, with the three accuracies it rests on."""
    if paper_claim(params, rounds) is None:
        return ""
    last = params.rounds[-1].id
    ft, wr, lrr = (rounds[s][last] for s in ("ft", "wr", "lrr"))
    return (
        f"The verdict, at the highest sparsity: ft {cell(ft)}, wr {cell(wr)}, lrr {cell(lrr)}; differences paired by "
        "seed with 95% confidence intervals from Student's t (n − 1 degrees of freedom); the claim holds when both "
        "intervals lie above zero."
    )


def safe_sparsities(
    params: Params, val_rounds: dict, sparsity: dict[int, float], val_dense: Summary
) -> dict[str, float | None]:
    """Per strategy, the highest sparsity whose validation accuracy is within one std of dense's
    on validation (None: none is): chosen on validation, like every choice, reported on test."""
    return {
        s: safe_sparsity([(sparsity[k], summary) for k, summary in val_rounds[s].items()], val_dense)
        for s in params.retrained
    }


def headline_metrics(
    params: Params,
    rounds: dict,
    val_rounds: dict,
    sparsity: dict[int, float],
    network: dict[int, float],
    dense: Summary,
    val_dense: Summary,
    ft_trains: bool,
) -> dict:
    """The DVC metric: the few numbers that answer the question, under keys that depend on the
    strategies and round count only, so `dvc metrics diff` and `dvc exp show` line up across
    experiments that change values: `dense.accuracy`, `<strategy>.accuracy.round<k>` (test, mean
    over seeds), `<strategy>.safe_sparsity` (chosen on validation), and the paper's claim at the
    highest sparsity: `verdict.sparsity` (of the prunable weights), `verdict.network_sparsity` (of
    all parameters), `verdict.{wr,lrr}_minus_ft.{mean,low,high}`, `verdict.holds`, and
    `verdict.ft_trains` (false where fine-tuning's rate cannot move the weights or it scores as
    `none`: the verdict then compares rewinding with no retraining). Fractions, as in
    results/metrics.json; null where the report says "—" or "cannot be judged". Every other value
    stays in results/metrics.json and results/evaluations.json."""
    safe = safe_sparsities(params, val_rounds, sparsity, val_dense)
    metrics: dict = {}  # the verdict first: `dvc exp show` gives the columns in this order
    gains = paper_claim(params, rounds)
    if gains is not None:
        holds = claim_holds(gains)

        def interval(gain: Difference) -> dict[str, float | None]:
            judged = holds is not None
            return {"mean": gain.mean, "low": gain.low if judged else None, "high": gain.high if judged else None}

        last = params.rounds[-1].id
        metrics["verdict"] = {
            "holds": holds,
            "ft_trains": ft_trains,
            "sparsity": sparsity[last],
            "network_sparsity": network[last],
            "wr_minus_ft": interval(gains["wr"]),
            "lrr_minus_ft": interval(gains["lrr"]),
        }
    return (
        metrics
        | {"dense": {"accuracy": dense.mean}}
        | {
            s: {
                "accuracy": {f"round{spec.id}": rounds[s][spec.id].mean for spec in params.rounds},
                "safe_sparsity": safe[s],
            }
            for s in params.retrained
        }
    )


def safe_table(params: Params, rounds: dict, val_rounds: dict, sparsity: dict[int, float], val_dense: Summary) -> str:
    lines = ["| strategy | highest safe sparsity (on validation) | its test accuracy |", "|---|---:|---:|"]
    by_sparsity = {sparse: k for k, sparse in sparsity.items()}
    for s, safe in safe_sparsities(params, val_rounds, sparsity, val_dense).items():
        if safe is None:
            lines.append(f"| {name(s)} | {EMPTY} | {EMPTY} |")
        else:
            lines.append(f"| {name(s)} | {100 * safe:.2f}% | {cell(rounds[s][by_sparsity[safe]])} |")
    return "\n".join(lines)


Cells = Callable[[str, int], str]


def by_strategy(names: list[str], first: str, measures: list[tuple[str, Cells]], row_ids: list[int]) -> list[str]:
    """Table lines: a row per round, a column per measure, per strategy; one column for all where
    every strategy has the same value in every round (every strategy prunes a round to the same
    count, so sizes mostly agree), instead of repeating it."""
    columns: list[tuple[str, Callable[[int], str]]] = []
    for label, value in measures:
        if all(value(s, k) == value(names[0], k) for s in names for k in row_ids):
            columns.append((label, lambda k, value=value: value(names[0], k)))
        else:
            columns += [(f"{s} {label}", lambda k, s=s, value=value: value(s, k)) for s in names]
    lines = [f"| {first} | " + " | ".join(label for label, _ in columns) + " |", "|---:|" + "---:|" * len(columns)]
    lines += [f"| {k} | " + " | ".join(value(k) for _, value in columns) + " |" for k in row_ids]
    return lines


def size_table(params: Params, metrics: dict) -> str:
    dense = metrics["dense"]

    def m(s: str, k: int) -> dict:
        return metrics[s][f"round{k}"]

    measures: list[tuple[str, Cells]] = [
        ("params left (×)", lambda s, k: f"{m(s, k)['remaining_params']:,.0f} ({m(s, k)['compression']:.1f}×)"),
        ("sparsity of all params", lambda s, k: f"{100 * m(s, k)['network_sparsity']:.2f}%"),
        ("FLOPs", lambda s, k: f"{100 * m(s, k)['flops'] / m(s, k)['dense_flops']:.1f}%"),
    ]
    preamble = (
        f"Dense: {dense['total_params']:,.0f} parameters, {dense['dense_flops']:,.0f} multiply-accumulates per "
        "example. A column without a strategy's name holds every strategy's value.\n"
    )
    return round_table(params, measures, preamble)


def slimmed_table(params: Params, metrics: dict) -> str:
    """For filter pruning: what physically removing the dead filters, with the input channels they
    feed, leaves; empty for weight pruning, where whole filters rarely die."""
    if params.prune.granularity != "filter":
        return ""
    dense = metrics["dense"]

    def m(s: str, k: int) -> dict:
        return metrics[s][f"round{k}"]

    measures: list[tuple[str, Cells]] = [
        (
            "params left (×)",
            lambda s, k: f"{m(s, k)['slimmed_params']:,.0f} ({dense['total_params'] / m(s, k)['slimmed_params']:.1f}×)",
        ),
        ("FLOPs left", lambda s, k: f"{100 * m(s, k)['slimmed_flops'] / m(s, k)['dense_flops']:.1f}%"),
    ]
    preamble = (
        "\n### Dead filters physically removed\n\n"
        "Masked filters keep their place in every tensor; removing them, with the input channels and batch-norm "
        "entries they feed, leaves the network below (channels feeding a residual sum stay); the whole-network "
        "sparsity above counts every parameter, biases, norms and unpruned layers included.\n"
    )
    return round_table(params, measures, preamble)


def round_table(params: Params, measures: list[tuple[str, Cells]], preamble: str) -> str:
    """A table of `measures` per round and retrained strategy, after its `preamble`."""
    return "\n".join([preamble, *by_strategy(params.retrained, "round", measures, [spec.id for spec in params.rounds])])


def export_table(params: Params) -> str:
    """Each round's deployable files against its dense-format model file, mean over seeds: the
    compact file of surviving weights and, under filter pruning, the slimmed network. Measured
    speed is the benchmark's (`python -m bench.export`): it depends on the machine, a report must not."""
    filters = params.prune.granularity == "filter"
    kinds = ["compact", *(["slim"] if filters else [])]
    ratios: dict[tuple[str, int], dict[str, float]] = {}
    for spec in params.rounds:
        for s in params.compare:
            path = layout.export_sizes(layout.export_dir(s, spec.id))
            seeds = list(read_json(path).values())
            try:
                ratios[s, spec.id] = {
                    k: sum(seed[f"{k}_bytes"] / seed["model_bytes"] for seed in seeds) / len(seeds) for k in kinds
                }
            except (KeyError, TypeError, ZeroDivisionError):
                raise RewindError(f"{path}: no {' and '.join(kinds)} sizes for every seed") from None
    measures: list[tuple[str, Cells]] = [
        (kind, lambda s, k, kind=kind: f"{100 * ratios[s, k][kind]:.1f}%") for kind in kinds
    ]
    return "\n".join(
        [
            "Bytes on disk against the dense-format model file (which keeps pruned weights as zeros), mean over seeds; "
            "a column without a strategy's name holds every strategy's value.\n",
            *by_strategy(params.compare, "round", measures, [spec.id for spec in params.rounds]),
        ]
    )


def same_plan(params: Params, per_epoch: int, a: str, b: str, budget: int | str | None = None) -> bool:
    """Whether strategies `a` and `b` (at `budget`, or each at its own) retrain exactly alike: the
    same start weights, momentum, rates, data order and pruning. Then their results are equal by
    construction (fine-tuning and lrr, whenever the budget replays only the final rate), and a
    tie between them is no finding."""
    schedule = params.train.lr_schedule(per_epoch)

    def plan(name: str) -> tuple:
        strategy = params.strategy(name)
        if budget is not None:
            strategy = dataclasses.replace(strategy, budget=Duration.parse(budget))
        return resolve(strategy, schedule), params.pruning_method(name)

    return plan(a) == plan(b)


def describe(budget: int | str) -> str:
    """A budget in words: `20 epochs`, `500 iterations`."""
    duration = Duration.parse(budget)
    return f"{duration.amount} {duration.unit.removesuffix('s') if duration.amount == 1 else duration.unit}"


Sweep = dict[tuple[str, int], dict[str, Summary]]


def sweep_results(params: Params, key: str = "accuracy") -> Sweep:
    """(strategy, budget) → sparsity key → `key` (test `accuracy` or `val_accuracy`) over seeds,
    from every sweep stage's file."""
    results = {}
    for strategy in params.sweep.strategies:
        path = layout.sweep_result(strategy)
        data = read_json(path)
        try:
            for budget in params.sweep.budgets:
                by_sparsity = data["budgets"][str(budget)]
                results[strategy, budget] = {
                    layout.sparsity_key(sp): summarize([float(a) for a in by_sparsity[layout.sparsity_key(sp)][key]])
                    for sp in params.sweep.sparsities
                }
        except (KeyError, TypeError, ValueError):
            raise RewindError(f"{path}: no {key} for every sweep budget and sparsity") from None
    return results


def sweep_table(params: Params, sweep: Sweep, per_epoch: int) -> str:
    """Test accuracy per budget, and each strategy against the reference, paired by seed."""
    names = params.sweep.strategies
    base = reference(names)
    others = [s for s in names if s != base]
    lines = [
        "| sparsity | budget (epochs; it: iterations) | "
        + " | ".join([*names, *(f"{s} − {base}" for s in others)])
        + " |",
        "|---:|---:|" + "---:|" * (len(names) + len(others)),
    ]
    for sp in params.sweep.sparsities:
        key = layout.sparsity_key(sp)
        for budget in params.sweep.budgets:
            gains = [
                f"≡ {base} (same plan)"
                if same_plan(params, per_epoch, s, base, budget)
                else difference_cell(paired_difference(sweep[s, budget][key], sweep[base, budget][key]))
                for s in others
            ]
            accuracies = [cell(sweep[s, budget][key]) for s in names]
            lines.append(f"| {100 * sp:.1f}% | {budget} | " + " | ".join(accuracies + gains) + " |")
    return "\n".join(lines)


def sweep_notes(params: Params, per_epoch: int, distances: dict[int | str, list[float]]) -> str:
    """Beside the sweep: budgets at which a strategy cannot train, and how close wr's start weights
    lie to lrr's at each budget (largest over seeds)."""
    notes = []
    for s in params.sweep.strategies:
        still = [str(budget) for budget in params.sweep.budgets if params.still_rate(s, per_epoch, budget) is not None]
        if still:
            notes.append(
                f"{name(s)} cannot train at budget{'s' * (len(still) > 1)} {', '.join(still)}: every rate it uses "
                f"there is below {STILL_FRACTION:g} of train.lr."
            )
    if rewinds_against_lrr(params, params.sweep.strategies):
        close = [str(b) for b in params.sweep.budgets if max(distances[b]) < CLOSE_STARTS]
        listed = ", ".join(f"{b}: {100 * max(distances[b]):.2f}%" for b in params.sweep.budgets)
        notes.append(
            f"How far wr's start weights lie from lrr's (the dense weights at T − budget from the final ones; relative "
            f"L2 distance, largest over seeds): {listed}."
            + (
                f" Below {100 * CLOSE_STARTS:g}% (budget{'s' * (len(close) > 1)} {', '.join(close)}) the two start "
                "almost alike, so their equality there is no finding."
                if close
                else ""
            )
        )
    return "\n\n".join(notes)


def best_budgets_table(params: Params, sweep: Sweep, val_sweep: Sweep, per_epoch: int) -> str:
    """Per strategy and sparsity, the budget with the best validation accuracy, and its test
    accuracy; budgets tied on validation are named, and the smallest of them (the cheapest) taken."""
    lines = [
        "| sparsity | " + " | ".join(params.sweep.strategies) + " |",
        "|---:|" + "---|" * len(params.sweep.strategies),
    ]
    for sp in params.sweep.sparsities:
        key = layout.sparsity_key(sp)
        cells = []
        for s in params.sweep.strategies:
            tied = best({budget: val_sweep[s, budget][key] for budget in params.sweep.budgets})
            chosen = min(tied, key=lambda budget: Duration.parse(budget).steps(per_epoch))
            others = [str(budget) for budget in tied if budget != chosen]
            tie = f" (tied on validation with {', '.join(others)}; the smallest taken)" if others else ""
            cells.append(f"{describe(chosen)}: {cell(sweep[s, chosen][key])}{tie}")
        lines.append(f"| {100 * sp:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def identical_plans(params: Params, per_epoch: int) -> dict[tuple[str, int | str], str]:
    """(strategy, budget) → the reference strategy whose plan it repeats, for the sweep figure."""
    base = reference(params.sweep.strategies)
    return {
        (s, budget): base
        for s in params.sweep.strategies
        if s != base
        for budget in params.sweep.budgets
        if same_plan(params, per_epoch, s, base, budget)
    }


def accuracy_csv(params: Params, rounds: dict, sparsity: dict[int, float]) -> str:
    """Wide CSV that dvc.yaml's accuracy plot reads: mean per strategy, and its std beside it."""
    header = ["round", "sparsity", *params.retrained, *(f"{s}_std" for s in params.retrained)]
    rows = [",".join(header)]
    for spec in params.rounds:
        summaries = [rounds[s][spec.id] for s in params.retrained]
        values = [summary.mean for summary in summaries] + [summary.std for summary in summaries]
        rows.append(f"{spec.id},{sparsity[spec.id]:.6f}," + ",".join(f"{v:.6f}" for v in values))
    return "\n".join(rows) + "\n"


def budget_csv(params: Params, sweep: dict) -> str:
    header = ["sparsity", "budget", *params.sweep.strategies]
    rows = [",".join(header)]
    for sp in params.sweep.sparsities:
        for budget in params.sweep.budgets:
            rows.append(
                f"{layout.sparsity_key(sp)},{budget},"
                + ",".join(f"{sweep[s, budget][layout.sparsity_key(sp)].mean:.6f}" for s in params.sweep.strategies)
            )
    return "\n".join(rows) + "\n"


def intro(params: Params, dense: Summary, images: int) -> str:
    """What every number below is: the run, the statistics, the test images, where choices are made."""
    train = params.train
    schedule = f"{train.schedule} schedule from lr {train.lr:g}" + (
        f", ×{train.gamma:g} at epoch{'s' * (len(train.milestones) > 1)} {', '.join(map(str, train.milestones))}"
        if train.milestones
        else ""
    )
    return (
        f"{params.model.name} on {params.data.name}, dense training {train.epochs} epochs ({schedule}), "
        f"{len(params.seeds)} seeds ({', '.join(map(str, params.seeds))}). Test accuracy in %, mean ± standard "
        f"deviation over seeds; dense network **{cell(dense)}**. Each accuracy rests on {images:,} test images: one "
        f"image is {100 / images:.2f} points of one seed's accuracy. Every choice (the bold cell, the winner, the safe "
        f"sparsity, the best budget) is made on a separate validation split "
        f"({100 * params.data.validation_fraction:g}% of the test images, held out) and reported on test. Sparsity is "
        "of the prunable weights; the size table gives that of all parameters."
    )


PAIRED = (
    "Test accuracy minus {base}'s, in points, seed by seed: mean and 95% confidence interval (Student's t, n − 1 "
    "degrees of freedom); **bold** where the interval excludes zero. Every strategy of a seed starts from the same "
    "dense network and sees the same data order, so pairing removes what the seed does to both."
)
PAPER = (
    "Test accuracy, %: ours (mean ± std over seeds) and the paper's published runs (median, min–max over its "
    "trials), where the paper measured the same thing."
)
WINNERS = (
    "The winner has the best mean validation accuracy (strategies tied for it are a tie, not a winner); its lead, "
    "winner − runner-up, is measured on test, paired by seed, with a 95% interval: a lead the seeds support lies "
    "above zero."
)
SAFE = (
    "Per strategy, the highest sparsity whose mean validation accuracy is within one standard deviation of the "
    f"dense network's on validation (mean ≥ dense mean − dense std), and its test accuracy; {EMPTY}: no sparsity is."
)
SWEEP = (
    'Test accuracy; "≡ {base} (same plan)" marks a budget at which a strategy retrains exactly as {base} does (the '
    "same weights, rates and data: lrr replays only the final rate when the budget does not reach back past the last "
    "milestone), so their equality is no finding."
)


def report(params: Params, args: argparse.Namespace) -> None:
    metrics = read_json(layout.METRICS)
    evaluations = read_json(layout.EVALUATIONS)
    dense, rounds = accuracy_summaries(params, evaluations)
    val_dense, val_rounds = accuracy_summaries(params, evaluations, "val_accuracy")
    sparsity, network = sparsities(params, evaluations)
    sweep, val_sweep = sweep_results(params), sweep_results(params, "val_accuracy")
    histories = {s: read_json(layout.history(layout.DENSE, s))["epochs"] for s in params.seeds}
    images = test_images(evaluations)
    per_epoch = dataset_steps_per_epoch(params)
    stalled = ft_stalled(params, rounds, sparsity, per_epoch)
    budgets = [
        *([params.strategies["wr"].budget] if rewinds_against_lrr(params, params.retrained) else []),
        *(params.sweep.budgets if rewinds_against_lrr(params, params.sweep.strategies) else []),
    ]
    distances = start_distances(params, per_epoch, budgets)
    from stages import figures, paper  # matplotlib is imported only here

    published = {key: found.median for key, found in paper.pruned(params, sparsity, per_epoch).items()}
    answer = first_line(params, rounds, sparsity, network, stalled)
    accuracy = accuracy_table(params, rounds, val_rounds, sparsity)
    base, swept = reference(params.retrained), reference(params.sweep.strategies)
    warnings = caveats(params, rounds, sparsity, network, stalled, distances, per_epoch)
    budgets_line = ", ".join(f"{s} {describe(params.strategies[s].budget)}" for s in params.retrained)
    blocks = [
        answer,
        "# Retraining after pruning",
        intro(params, dense, images),
        verdict_detail(params, rounds),
        "**Read with care:**\n\n" + "\n".join(f"- {line}" for line in warnings) if warnings else "",
        f"## Accuracy after {params.prune.schedule} {params.prune.scope} pruning and retraining",
        f"Budgets: {budgets_line}.{controls_line(params)} **Bold**: the best validation accuracy at that sparsity "
        "(each of those tied for it, when several are).",
        accuracy,
        f"![accuracy vs sparsity]({layout.ACCURACY_PNG.name})",
        f"### Against {base}, paired by seed",
        PAIRED.format(base=base),
        differences_table(params, rounds, sparsity, per_epoch),
        "## The paper's numbers beside ours",
        PAPER,
        paper_table(params, rounds, dense, sparsity, per_epoch),
        "## Which strategy wins at each sparsity",
        WINNERS,
        winners_table(params, rounds, val_rounds, sparsity),
        "## Safe compression",
        SAFE,
        safe_table(params, rounds, val_rounds, sparsity, val_dense),
        "## Size: remaining parameters (compression) and FLOPs against dense",
        size_table(params, metrics),
        slimmed_table(params, metrics),
        "### Shipped files (`exports/`)",
        export_table(params),
        "## Accuracy against retraining budget (one-shot pruning from the dense network)",
        SWEEP.format(base=swept),
        sweep_table(params, sweep, per_epoch),
        sweep_notes(params, per_epoch, distances),
        "Each strategy's best budget, chosen on validation, with its test accuracy:",
        best_budgets_table(params, sweep, val_sweep, per_epoch),
        f"![accuracy vs budget]({layout.BUDGET_PNG.name})",
        "## Dense training",
        f"![dense training]({layout.DENSE_PNG.name})",
    ]
    text = "\n\n".join(block.strip("\n") for block in blocks if block) + "\n"
    outputs = {  # all made before any is written: a failure leaves the previous report whole
        layout.REPORT: text.encode(),
        layout.HEADLINE: json_bytes(
            headline_metrics(params, rounds, val_rounds, sparsity, network, dense, val_dense, not stalled),
            sort_keys=False,
        ),
        layout.ACCURACY_CSV: accuracy_csv(params, rounds, sparsity).encode(),
        layout.BUDGET_CSV: budget_csv(params, sweep).encode(),
        layout.ACCURACY_PNG: figures.accuracy_vs_sparsity(params.retrained, rounds, sparsity, dense, published),
        layout.BUDGET_PNG: figures.accuracy_vs_budget(
            params.sweep, sweep, identical_plans(params, per_epoch), per_epoch
        ),
        layout.DENSE_PNG: figures.dense_training(histories),
    }
    for path, payload in outputs.items():
        atomic_write_bytes(path, payload)
    summary = f"Dense test accuracy: {cell(dense)} (mean ± std over {dense.n} seeds)"
    print(f"\n{answer}\n\n{summary}\n\n{accuracy}\n")


if __name__ == "__main__":
    run_stage(report, "Write the report: tables, paired intervals, figures.")
