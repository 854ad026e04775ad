"""Stage `report`: the comparison as a markdown table, a CSV for `dvc plots`, and a PNG."""

import argparse
import json

from rewind import RewindError
from rewind.checkpoint import atomic_write_bytes
from stages import layout
from stages.common import run_stage
from stages.params import Params


def load_metrics(params: Params) -> dict:
    """metrics.json, checked to hold every compared strategy and round."""
    try:
        metrics = json.loads(layout.METRICS.read_text())
    except FileNotFoundError:
        raise RewindError(f"{layout.METRICS}: file not found; run the evaluate stage first") from None
    except json.JSONDecodeError as err:
        raise RewindError(f"{layout.METRICS}: not valid JSON ({err.msg} at line {err.lineno})") from None
    for strategy in params.compare:
        for spec in params.rounds:
            try:
                entry = metrics[strategy][f"round{spec.id}"]
                float(entry["accuracy"]), float(entry["sparsity"])
            except (KeyError, TypeError, ValueError):
                raise RewindError(f"{layout.METRICS}: no accuracy and sparsity for {strategy} round{spec.id}") from None
    if "dense" not in metrics or "accuracy" not in metrics["dense"]:
        raise RewindError(f"{layout.METRICS}: no dense accuracy")
    return metrics


def table(params: Params, metrics: dict) -> str:
    """Rounds down, strategies across: test accuracy (%) at each round's sparsity; best in bold."""
    header = "| round | sparsity | remaining | " + " | ".join(params.compare) + " |"
    lines = [header, "|" + "---:|" * (3 + len(params.compare))]
    for spec in params.rounds:
        key = f"round{spec.id}"
        row = {s: metrics[s][key]["accuracy"] for s in params.compare}
        best = max(row.values())
        first = metrics[params.compare[0]][key]
        cells = [f"**{100 * a:.2f}**" if a == best else f"{100 * a:.2f}" for a in row.values()]
        lines.append(
            f"| {spec.id} | {100 * first['sparsity']:.2f}% | {100 * (1 - first['sparsity']):.2f}% | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def csv_rows(params: Params, metrics: dict) -> str:
    """Wide CSV (one column per strategy) that dvc.yaml's top-level plot reads."""
    lines = ["round,sparsity," + ",".join(params.compare)]
    for spec in params.rounds:
        key = f"round{spec.id}"
        sparsity = metrics[params.compare[0]][key]["sparsity"]
        lines.append(
            f"{spec.id},{sparsity:.6f}," + ",".join(f"{metrics[s][key]['accuracy']:.6f}" for s in params.compare)
        )
    return "\n".join(lines) + "\n"


def plot(params: Params, metrics: dict) -> bytes:
    """Accuracy against sparsity, one line per strategy, sparsity on a log scale of density."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for strategy in params.compare:
        points = [metrics[strategy][f"round{s.id}"] for s in params.rounds]
        ax.plot(
            [100 * (1 - p["sparsity"]) for p in points],
            [100 * p["accuracy"] for p in points],
            marker="o",
            label=strategy,
        )
    ax.axhline(100 * metrics["dense"]["accuracy"], color="black", linestyle="--", linewidth=1, label="dense")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%), log scale: sparser to the right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Retraining after pruning: accuracy vs sparsity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="strategy")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def report(params: Params, args: argparse.Namespace) -> None:
    metrics = load_metrics(params)
    body = table(params, metrics)
    dense = metrics["dense"]["accuracy"]
    text = (
        "# Retraining after pruning\n\n"
        f"Dense network ({params.model.name} on {params.data.name}, {params.train.epochs} epochs): "
        f"test accuracy **{100 * dense:.2f}%**.\n\n"
        f"Test accuracy (%) after {params.prune.schedule} {params.prune.scope} {params.prune.method} pruning "
        "and retraining with each strategy "
        f"({', '.join(f'{s}: {params.strategies[s].budget} epochs' for s in params.compare)}):\n\n"
        f"{body}\n\n![accuracy vs sparsity]({layout.ACCURACY_PNG.name})\n"
    )
    atomic_write_bytes(layout.REPORT, text.encode())
    atomic_write_bytes(layout.ACCURACY_CSV, csv_rows(params, metrics).encode())
    atomic_write_bytes(layout.ACCURACY_PNG, plot(params, metrics))
    print(f"\nDense test accuracy: {100 * dense:.2f}%\n\n{body}\n")


if __name__ == "__main__":
    run_stage(report, "Write the comparison report, plot data and figure.")
