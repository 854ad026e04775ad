"""Stage `report`: the comparison people read — tables with mean ± std over seeds, the derived
answers (winner per sparsity, safe sparsity, size and FLOPs), CSVs for `dvc plots`, and PNGs —
and the headline metrics, the few numbers `dvc exp show`, `dvc metrics diff` and VS Code show."""

import argparse
import dataclasses
import json
from pathlib import Path

from rewind import RewindError
from rewind.checkpoint import atomic_write_bytes, read_file
from rewind.schedule import Duration
from rewind.stats import Difference, Summary, paired_difference, safe_sparsity, summarize, winner
from rewind.strategies import resolve
from stages.shared import layout
from stages.shared.entry import run_stage
from stages.shared.files import dataset_steps_per_epoch, json_bytes
from stages.shared.params import Params


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


def sparsities(params: Params, metrics: dict) -> dict[int, float]:
    """Each round's sparsity (mean over seeds of the first strategy; all prune to the same count)."""
    try:
        return {spec.id: float(metrics[params.retrained[0]][f"round{spec.id}"]["sparsity"]) for spec in params.rounds}
    except (KeyError, TypeError, ValueError):
        raise RewindError(f"{layout.METRICS}: no sparsity for every round of {params.retrained[0]}") from None


def cell(summary: Summary) -> str:
    return f"{100 * summary.mean:.2f} ± {100 * summary.std:.2f}"


def accuracy_table(params: Params, rounds: dict, sparsity: dict[int, float]) -> str:
    lines = ["| round | sparsity | " + " | ".join(params.retrained) + " |", "|" + "---:|" * (2 + len(params.retrained))]
    for spec in params.rounds:
        best = max(rounds[s][spec.id].mean for s in params.retrained)
        cells = [
            f"**{cell(rounds[s][spec.id])}**" if rounds[s][spec.id].mean == best else cell(rounds[s][spec.id])
            for s in params.retrained
        ]
        lines.append(f"| {spec.id} | {100 * sparsity[spec.id]:.2f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table(params: Params, rounds: dict, dense: Summary, sparsity: dict[int, float], per_epoch: int) -> str:
    """Ours beside the paper's median (min-max over its trials) where the paper ran the same
    network, pruning, schedule, strategy, density and budget."""
    from stages import paper

    if not paper.comparable(params):
        return (
            f"The paper ran no {params.model.name} on {params.data.name} with this pruning "
            "(it published CIFAR-10 ResNet-20/56/110 with global magnitude pruning and filter pruning): "
            "nothing to set beside these numbers."
        )
    published = paper.pruned(params, sparsity, per_epoch)
    theirs = paper.dense(params)
    lines = [
        "| sparsity | strategy | ours | paper: median (min–max) | trials | ours − paper |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    if theirs is not None:
        lines.append(
            f"| 0.00% | dense | {cell(dense)} | {published_cell(theirs)} | {theirs.trials} | "
            f"{100 * (dense.mean - theirs.median):+.2f} |"
        )
    for spec in params.rounds:
        for s in params.retrained:
            if (s, spec.id) in published:
                found = published[s, spec.id]
                lines.append(
                    f"| {100 * sparsity[spec.id]:.2f}% | {s} | {cell(rounds[s][spec.id])} | {published_cell(found)} | "
                    f"{found.trials} | {100 * (rounds[s][spec.id].mean - found.median):+.2f} |"
                )
    if len(lines) == 2 + (theirs is not None):
        lines.append("| – | – | – | the paper ran none of these strategy, budget and density combinations | – | – |")
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


def difference_cell(difference: Difference) -> str:
    """`+1.63 [+0.20, +3.06]` in points; bold when the interval excludes zero."""
    if difference.n < 2:
        return f"{100 * difference.mean:+.2f} (1 seed)"
    text = f"{100 * difference.mean:+.2f} [{100 * difference.low:+.2f}, {100 * difference.high:+.2f}]"
    return f"**{text}**" if difference.significant else text


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
        "| sparsity | winner (on validation) | runner-up | winner − runner-up on test, 95% CI | supported? |",
        "|---:|---|---|---:|---|",
    ]
    for spec in params.rounds:
        verdict = winner(
            {s: val_rounds[s][spec.id] for s in params.retrained}, {s: rounds[s][spec.id] for s in params.retrained}
        )
        if verdict.lead is None:
            lines.append(f"| {100 * sparsity[spec.id]:.2f}% | {verdict.winner} | – | – | – |")
            continue
        supported = "no verdict (1 seed)" if verdict.lead.n < 2 else "yes" if verdict.lead.significant else "no"
        lines.append(
            f"| {100 * sparsity[spec.id]:.2f}% | {verdict.winner} | {verdict.runner_up} | "
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


def headline(params: Params, rounds: dict, sparsity: dict[int, float]) -> str:
    """The paper's claim, checked at the highest sparsity: both rewinding strategies beat ft, each
    by a paired 95% interval that excludes zero."""
    gains = paper_claim(params, rounds)
    if gains is None:
        return "The paper's claim needs ft, wr and lrr in `compare`; it is not checked here."
    last = params.rounds[-1].id
    ft, wr, lrr = (rounds[s][last] for s in ("ft", "wr", "lrr"))
    where = f"At the highest sparsity ({100 * sparsity[last]:.2f}%)"
    numbers = f"ft {cell(ft)}, wr {cell(wr)}, lrr {cell(lrr)}"
    holds = claim_holds(gains)
    if holds is None:
        return (
            f"{where}, the paper's finding — both rewinding strategies above fine-tuning — cannot be judged: "
            f"one seed gives no confidence interval ({numbers}). Add seeds to `seeds`."
        )
    verdict = "**holds**" if holds else "**is not supported**"
    return (
        f"{where}, the paper's finding — both rewinding strategies above fine-tuning — {verdict}: "
        f"wr − ft {difference_cell(gains['wr'])}, lrr − ft {difference_cell(gains['lrr'])} points "
        f"({numbers}; mean ± std over {ft.n} seeds; differences paired by seed with 95% confidence intervals "
        "from Student's t; it holds when both intervals lie above zero)."
    )


def safe_sparsities(
    params: Params, rounds: dict, sparsity: dict[int, float], dense: Summary
) -> dict[str, float | None]:
    """Per strategy, the highest sparsity within one std of dense (None: none is)."""
    return {
        s: safe_sparsity([(sparsity[k], summary) for k, summary in rounds[s].items()], dense) for s in params.retrained
    }


def headline_metrics(params: Params, rounds: dict, sparsity: dict[int, float], dense: Summary) -> dict:
    """The DVC metric: the few numbers that answer the question, under keys that depend on the
    strategies and round count only, so `dvc metrics diff` and `dvc exp show` line up across
    experiments that change values: `dense.accuracy`, `<strategy>.accuracy.round<k>` (test, mean
    over seeds), `<strategy>.safe_sparsity`, and the paper's claim at the highest sparsity
    (`verdict.sparsity`, `verdict.{wr,lrr}_minus_ft.{mean,low,high}`, `verdict.holds`). Fractions,
    as in results/metrics.json; null where the report says "none" or "cannot be judged". Every
    other value stays in results/metrics.json and results/evaluations.json."""
    safe = safe_sparsities(params, rounds, sparsity, dense)
    metrics: dict = {"dense": {"accuracy": dense.mean}} | {
        s: {
            "accuracy": {f"round{spec.id}": rounds[s][spec.id].mean for spec in params.rounds},
            "safe_sparsity": safe[s],
        }
        for s in params.retrained
    }
    gains = paper_claim(params, rounds)
    if gains is not None:
        holds = claim_holds(gains)

        def interval(gain: Difference) -> dict[str, float | None]:
            judged = holds is not None
            return {"mean": gain.mean, "low": gain.low if judged else None, "high": gain.high if judged else None}

        metrics["verdict"] = {
            "sparsity": sparsity[params.rounds[-1].id],
            "wr_minus_ft": interval(gains["wr"]),
            "lrr_minus_ft": interval(gains["lrr"]),
            "holds": holds,
        }
    return metrics


def safe_table(params: Params, rounds: dict, sparsity: dict[int, float], dense: Summary) -> str:
    lines = ["| strategy | highest sparsity within one std of dense |", "|---|---:|"]
    for s, safe in safe_sparsities(params, rounds, sparsity, dense).items():
        lines.append(f"| {s} | {'none' if safe is None else f'{100 * safe:.2f}%'} |")
    return "\n".join(lines)


def size_table(params: Params, metrics: dict) -> str:
    dense = metrics["dense"]
    lines = [
        f"Dense: {dense['total_params']:,.0f} parameters, "
        f"{dense['dense_flops']:,.0f} multiply-accumulates per example.\n",
        "| round | " + " | ".join(f"{s} params (×) | {s} FLOPs" for s in params.retrained) + " |",
        "|---:|" + "---:|---:|" * len(params.retrained),
    ]
    for spec in params.rounds:
        cells = []
        for s in params.retrained:
            m = metrics[s][f"round{spec.id}"]
            cells.append(
                f"{m['remaining_params']:,.0f} ({m['compression']:.1f}×) | {100 * m['flops'] / m['dense_flops']:.1f}%"
            )
        lines.append(f"| {spec.id} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def slimmed_table(params: Params, metrics: dict) -> str:
    """For filter pruning: the sparsity of the whole network (the tables' sparsity covers only the
    pruned layers), and what physically removing the dead filters, with the input channels they
    feed, leaves; empty for weight pruning, where whole filters rarely die."""
    if params.prune.granularity != "filter":
        return ""
    dense = metrics["dense"]
    lines = [
        "\n### Dead filters physically removed\n",
        "Masked filters keep their place in every tensor; removing them, with the input channels and "
        "batch-norm entries they feed, leaves the network below (channels feeding a residual sum stay). "
        "Whole-network sparsity counts every parameter, biases, norms and unpruned layers included.\n",
        "| round | "
        + " | ".join(f"{s} whole-network sparsity | {s} params left | {s} FLOPs left" for s in params.retrained)
        + " |",
        "|---:|" + "---:|---:|---:|" * len(params.retrained),
    ]
    for spec in params.rounds:
        cells = []
        for s in params.retrained:
            m = metrics[s][f"round{spec.id}"]
            ratio, flops = dense["total_params"] / m["slimmed_params"], m["slimmed_flops"] / m["dense_flops"]
            cells.append(
                f"{100 * m['network_sparsity']:.1f}% | {m['slimmed_params']:,.0f} ({ratio:.1f}×) | {100 * flops:.1f}%"
            )
        lines.append(f"| {spec.id} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def export_table(params: Params) -> str:
    """Each round's deployable files against its dense-format model file, mean over seeds: the
    compact file of surviving weights and, under filter pruning, the slimmed network. Measured
    speed is the benchmark's (`python -m bench.export`): it depends on the machine, a report must not."""
    filters = params.prune.granularity == "filter"
    kinds = ["compact", *(["slim"] if filters else [])]
    lines = [
        "Bytes on disk against the dense-format model file (which keeps pruned weights as zeros), mean over seeds.\n",
        "| round | " + " | ".join(f"{s} {kind}" for s in params.compare for kind in kinds) + " |",
        "|---:|" + "---:|" * (len(params.compare) * len(kinds)),
    ]
    for spec in params.rounds:
        cells = []
        for s in params.compare:
            path = layout.export_sizes(layout.export_dir(s, spec.id))
            seeds = list(read_json(path).values())
            try:
                ratios = {
                    k: sum(seed[f"{k}_bytes"] / seed["model_bytes"] for seed in seeds) / len(seeds) for k in kinds
                }
            except (KeyError, TypeError, ZeroDivisionError):
                raise RewindError(f"{path}: no {' and '.join(kinds)} sizes for every seed") from None
            cells += [f"{100 * ratios[k]:.1f}%" for k in kinds]
        lines.append(f"| {spec.id} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    return f"{duration.amount} {duration.unit}"


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


def best_budgets_table(params: Params, sweep: Sweep, val_sweep: Sweep) -> str:
    """Per strategy and sparsity, the budget with the best validation accuracy, and its test accuracy."""
    lines = [
        "| sparsity | " + " | ".join(params.sweep.strategies) + " |",
        "|---:|" + "---|" * len(params.sweep.strategies),
    ]
    for sp in params.sweep.sparsities:
        key = layout.sparsity_key(sp)
        cells = []
        for s in params.sweep.strategies:
            best = max(params.sweep.budgets, key=lambda budget: val_sweep[s, budget][key].mean)
            cells.append(f"{best} epochs: {cell(sweep[s, best][key])}")
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


def report(params: Params, args: argparse.Namespace) -> None:
    metrics = read_json(layout.METRICS)
    evaluations = read_json(layout.EVALUATIONS)
    dense, rounds = accuracy_summaries(params, evaluations)
    _, val_rounds = accuracy_summaries(params, evaluations, "val_accuracy")
    sparsity = sparsities(params, metrics)
    sweep, val_sweep = sweep_results(params), sweep_results(params, "val_accuracy")
    histories = {s: read_json(layout.history(layout.DENSE, s))["epochs"] for s in params.seeds}
    images = test_images(evaluations)
    per_epoch = dataset_steps_per_epoch(params)
    from stages import figures, paper  # matplotlib is imported only here

    published = {key: found.median for key, found in paper.pruned(params, sparsity, per_epoch).items()}

    accuracy = accuracy_table(params, rounds, sparsity)
    base = reference(params.retrained)
    text = f"""# Retraining after pruning

{params.model.name} on {params.data.name}, dense training {params.train.epochs} epochs; every number is the
mean ± standard deviation over {len(params.seeds)} seeds ({", ".join(map(str, params.seeds))}), test accuracy in %.
Dense network: **{cell(dense)}**. Each accuracy rests on {images:,} test images: one image is
{100 / images:.2f} points of one seed's accuracy. Choices (the winner, the best budget) are made on a
separate validation split ({100 * params.data.validation_fraction:g}% of the test images, held out) and
reported on test.

{headline(params, rounds, sparsity)}

## Accuracy after {params.prune.schedule} {params.prune.scope} pruning and retraining

Budgets: {", ".join(f"{s} {describe(params.strategies[s].budget)}" for s in params.retrained)}.{controls_line(params)}

{accuracy}

![accuracy vs sparsity]({layout.ACCURACY_PNG.name})

### Against {base}, paired by seed

Test accuracy minus {base}'s, in points, seed by seed: mean and 95% confidence interval (Student's t,
n − 1 degrees of freedom); **bold** where the interval excludes zero. Every strategy of a seed starts
from the same dense network and sees the same data order, so pairing removes what the seed does to both.

{differences_table(params, rounds, sparsity, per_epoch)}

## The paper's numbers beside ours

Test accuracy, %: ours (mean ± std over seeds) and the paper's published runs at the same network,
pruning, schedule, strategy, density and budget (median, min–max over its trials).

{paper_table(params, rounds, dense, sparsity, per_epoch)}

## Which strategy wins at each sparsity

The winner has the best mean validation accuracy; its lead over the runner-up is measured on test,
paired by seed, with a 95% interval: a lead the seeds support excludes zero.

{winners_table(params, rounds, val_rounds, sparsity)}

## Safe compression

The highest sparsity whose mean accuracy is within one standard deviation of the dense network's
(mean ≥ dense mean − dense std).

{safe_table(params, rounds, sparsity, dense)}

## Size: remaining parameters (compression) and FLOPs against dense

{size_table(params, metrics)}
{slimmed_table(params, metrics)}

### Shipped files (`exports/`)

{export_table(params)}

## Accuracy against retraining budget (one-shot pruning from the dense network)

Test accuracy; "≡ {reference(params.sweep.strategies)} (same plan)" marks a budget at which a
strategy retrains exactly as {reference(params.sweep.strategies)} does (the same weights, rates and
data: lrr replays only the final rate when the budget does not reach back past the last
milestone), so their equality is no finding.

{sweep_table(params, sweep, per_epoch)}

Each strategy's best budget, chosen on validation, with its test accuracy:

{best_budgets_table(params, sweep, val_sweep)}

![accuracy vs budget]({layout.BUDGET_PNG.name})

## Dense training

![dense training]({layout.DENSE_PNG.name})
"""
    outputs = {  # all made before any is written: a failure leaves the previous report whole
        layout.REPORT: text.encode(),
        layout.HEADLINE: json_bytes(headline_metrics(params, rounds, sparsity, dense)),
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
    print(f"\n{summary}\n\n{accuracy}\n\n{headline(params, rounds, sparsity)}\n")


if __name__ == "__main__":
    run_stage(report, "Write the report: tables, paired intervals, figures.")
