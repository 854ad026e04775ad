"""Stage `report`: the comparison people read — tables with mean ± std over seeds, the derived
answers (winner per sparsity, safe sparsity, size and FLOPs), CSVs for `dvc plots`, and PNGs."""

import argparse
import json
from pathlib import Path

from rewind import RewindError
from rewind.checkpoint import atomic_write_bytes, read_file
from rewind.stats import Summary, beats, safe_sparsity, summarize, winner
from stages.shared import layout
from stages.shared.entry import run_stage
from stages.shared.params import Params


def read_json(path: Path) -> dict:
    if not Path(path).exists():
        raise RewindError(f"{path}: file not found; run the stage that writes it first")
    try:
        return json.loads(read_file(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RewindError(f"{path}: not valid JSON ({err})") from None


def accuracy_summaries(params: Params, evaluations: dict) -> tuple[Summary, dict[str, dict[int, Summary]]]:
    """Dense and per-(strategy, round) accuracy over seeds, checked to cover every seed."""
    path = layout.EVALUATIONS

    def summary(seeds: object, what: str) -> Summary:
        try:
            return summarize([float(seeds[f"seed{s}"]["accuracy"]) for s in params.seeds])
        except (KeyError, TypeError, ValueError):
            raise RewindError(f"{path}: no accuracy for every seed of {what}") from None

    dense = summary(evaluations.get("dense"), "dense")
    rounds = {
        s: {
            spec.id: summary((evaluations.get(s) or {}).get(f"round{spec.id}"), f"{s} round{spec.id}")
            for spec in params.rounds
        }
        for s in params.compare
    }
    return dense, rounds


def sparsities(params: Params, metrics: dict) -> dict[int, float]:
    """Each round's sparsity (mean over seeds of the first strategy; all prune to the same count)."""
    try:
        return {spec.id: float(metrics[params.compare[0]][f"round{spec.id}"]["sparsity"]) for spec in params.rounds}
    except (KeyError, TypeError, ValueError):
        raise RewindError(f"{layout.METRICS}: no sparsity for every round of {params.compare[0]}") from None


def cell(summary: Summary) -> str:
    return f"{100 * summary.mean:.2f} ± {100 * summary.std:.2f}"


def accuracy_table(params: Params, rounds: dict, sparsity: dict[int, float]) -> str:
    lines = ["| round | sparsity | " + " | ".join(params.compare) + " |", "|" + "---:|" * (2 + len(params.compare))]
    for spec in params.rounds:
        best = max(rounds[s][spec.id].mean for s in params.compare)
        cells = [
            f"**{cell(rounds[s][spec.id])}**" if rounds[s][spec.id].mean == best else cell(rounds[s][spec.id])
            for s in params.compare
        ]
        lines.append(f"| {spec.id} | {100 * sparsity[spec.id]:.2f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def winners_table(params: Params, rounds: dict, sparsity: dict[int, float]) -> str:
    lines = [
        "| sparsity | winner | runner-up | lead (points) | lead beyond the seeds' spread? |",
        "|---:|---|---|---:|---|",
    ]
    for spec in params.rounds:
        verdict = winner({s: rounds[s][spec.id] for s in params.compare})
        lead = f"{100 * verdict.gap:.2f}" if verdict.runner_up else "–"
        beyond = "yes" if verdict.beyond_spread else "no"
        runner_up = verdict.runner_up or "–"
        if verdict.gap == 0:
            runner_up += " (tie)"
        lines.append(f"| {100 * sparsity[spec.id]:.2f}% | {verdict.winner} | {runner_up} | {lead} | {beyond} |")
    return "\n".join(lines)


def headline(params: Params, rounds: dict, sparsity: dict[int, float]) -> str:
    """The paper's claim, checked at the highest sparsity: both rewinding strategies beat ft."""
    if not {"ft", "wr", "lrr"} <= set(params.compare):
        return "The paper's claim needs ft, wr and lrr in `compare`; it is not checked here."
    last = params.rounds[-1].id
    ft, wr, lrr = (rounds[s][last] for s in ("ft", "wr", "lrr"))
    both = beats(wr, ft) and beats(lrr, ft)
    verdict = "**holds**" if both else "**does not hold** by more than the seeds' spread"
    return (
        f"At the highest sparsity ({100 * sparsity[last]:.2f}%), the paper's finding — both rewinding strategies "
        f"above fine-tuning — {verdict}: ft {cell(ft)}, wr {cell(wr)}, lrr {cell(lrr)} "
        f'(mean ± std over {ft.n} seeds; "beyond the spread" means the lead exceeds the larger std).'
    )


def safe_table(params: Params, rounds: dict, sparsity: dict[int, float], dense: Summary) -> str:
    lines = ["| strategy | highest sparsity within one std of dense |", "|---|---:|"]
    for s in params.compare:
        safe = safe_sparsity([(sparsity[k], summary) for k, summary in rounds[s].items()], dense)
        lines.append(f"| {s} | {'none' if safe is None else f'{100 * safe:.2f}%'} |")
    return "\n".join(lines)


def size_table(params: Params, metrics: dict) -> str:
    dense = metrics["dense"]
    lines = [
        f"Dense: {dense['total_params']:,.0f} parameters, "
        f"{dense['dense_flops']:,.0f} multiply-accumulates per example.\n",
        "| round | " + " | ".join(f"{s} params (×) | {s} FLOPs" for s in params.compare) + " |",
        "|---:|" + "---:|---:|" * len(params.compare),
    ]
    for spec in params.rounds:
        cells = []
        for s in params.compare:
            m = metrics[s][f"round{spec.id}"]
            cells.append(
                f"{m['remaining_params']:,.0f} ({m['compression']:.1f}×) | {100 * m['flops'] / m['dense_flops']:.1f}%"
            )
        lines.append(f"| {spec.id} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_results(params: Params) -> dict[tuple[str, int], dict[str, Summary]]:
    """(strategy, budget) → sparsity → accuracy over seeds, from every sweep stage's file."""
    results = {}
    for strategy in params.sweep.strategies:
        path = layout.sweep_result(strategy)
        data = read_json(path)
        try:
            for budget in params.sweep.budgets:
                results[strategy, budget] = {
                    layout.sparsity_key(sp): summarize(
                        [float(a) for a in data["budgets"][str(budget)][layout.sparsity_key(sp)]["accuracy"]]
                    )
                    for sp in params.sweep.sparsities
                }
        except (KeyError, TypeError, ValueError):
            raise RewindError(f"{path}: no accuracies for every sweep budget and sparsity") from None
    return results


def sweep_table(params: Params, sweep: dict) -> str:
    lines = [
        "| sparsity | budget (epochs) | " + " | ".join(params.sweep.strategies) + " |",
        "|---:|---:|" + "---:|" * len(params.sweep.strategies),
    ]
    for sp in params.sweep.sparsities:
        for budget in params.sweep.budgets:
            lines.append(
                f"| {100 * sp:.1f}% | {budget} | "
                + " | ".join(cell(sweep[s, budget][layout.sparsity_key(sp)]) for s in params.sweep.strategies)
                + " |"
            )
    return "\n".join(lines)


def accuracy_csv(params: Params, rounds: dict, sparsity: dict[int, float]) -> str:
    """Wide CSV that dvc.yaml's accuracy plot reads: mean per strategy, and its std beside it."""
    header = ["round", "sparsity", *params.compare, *(f"{s}_std" for s in params.compare)]
    rows = [",".join(header)]
    for spec in params.rounds:
        values = [rounds[s][spec.id].mean for s in params.compare] + [rounds[s][spec.id].std for s in params.compare]
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
    sparsity = sparsities(params, metrics)
    sweep = sweep_results(params)
    histories = {s: read_json(layout.history(layout.DENSE, s))["epochs"] for s in params.seeds}
    from stages import figures  # matplotlib is imported only here

    accuracy = accuracy_table(params, rounds, sparsity)
    text = f"""# Retraining after pruning

{params.model.name} on {params.data.name}, dense training {params.train.epochs} epochs; every number is the
mean ± standard deviation over {len(params.seeds)} seeds ({", ".join(map(str, params.seeds))}), test accuracy in %.
Dense network: **{cell(dense)}**.

{headline(params, rounds, sparsity)}

## Accuracy after {params.prune.schedule} {params.prune.scope} pruning and retraining

Budgets: {", ".join(f"{s} {params.strategies[s].budget} epochs" for s in params.compare)}.

{accuracy}

![accuracy vs sparsity]({layout.ACCURACY_PNG.name})

## Which strategy wins at each sparsity

{winners_table(params, rounds, sparsity)}

## Safe compression

The highest sparsity whose mean accuracy is within one standard deviation of the dense network's
(mean ≥ dense mean − dense std).

{safe_table(params, rounds, sparsity, dense)}

## Size: remaining parameters (compression) and FLOPs against dense

{size_table(params, metrics)}

## Accuracy against retraining budget (one-shot pruning from the dense network)

{sweep_table(params, sweep)}

![accuracy vs budget]({layout.BUDGET_PNG.name})

## Dense training

![dense training]({layout.DENSE_PNG.name})
"""
    atomic_write_bytes(layout.REPORT, text.encode())
    atomic_write_bytes(layout.ACCURACY_CSV, accuracy_csv(params, rounds, sparsity).encode())
    atomic_write_bytes(layout.BUDGET_CSV, budget_csv(params, sweep).encode())
    atomic_write_bytes(layout.ACCURACY_PNG, figures.accuracy_vs_sparsity(params.compare, rounds, sparsity, dense))
    atomic_write_bytes(layout.BUDGET_PNG, figures.accuracy_vs_budget(params.sweep, sweep))
    atomic_write_bytes(layout.DENSE_PNG, figures.dense_training(histories))
    summary = f"Dense test accuracy: {cell(dense)} (mean ± std over {dense.n} seeds)"
    print(f"\n{summary}\n\n{accuracy}\n\n{headline(params, rounds, sparsity)}\n")


if __name__ == "__main__":
    run_stage(report, "Write the comparison report, plot data and figures.")
