"""The report's figures, rendered with matplotlib to PNG bytes (DVC's own plots need a CDN)."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rewind.schedule import Duration
from rewind.stats import Summary
from stages.shared import layout


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


MARKERS = "osD^vP*Xh"


def accuracy_vs_sparsity(
    strategies: list[str], rounds: dict, sparsity: dict[int, float], dense: Summary, paper: dict[tuple[str, int], float]
) -> bytes:
    """Mean accuracy per strategy with a ±1 std band, against weights remaining on a log axis;
    the right panel zooms on the strategies within 10 points of dense, where the paper's
    comparison happens. `paper`: (strategy, round) → the paper's median, drawn as crosses."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    keys = sorted(sparsity)
    remaining = [100 * (1 - sparsity[k]) for k in keys]
    close = [s for s in strategies if min(rounds[s][k].mean for k in keys) > dense.mean - 0.10] or strategies
    for ax, shown, title in (
        (axes[0], strategies, "all strategies"),
        (axes[1], close, "zoom: within 10 points of dense"),
    ):
        for index, strategy in enumerate(strategies):
            if strategy not in shown:
                continue
            mean = [100 * rounds[strategy][k].mean for k in keys]
            std = [100 * rounds[strategy][k].std for k in keys]
            color = f"C{index}"
            ax.plot(remaining, mean, marker=MARKERS[index % len(MARKERS)], color=color, label=strategy)
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(remaining, low, high, color=color, alpha=0.15)
            published = [(100 * (1 - sparsity[k]), 100 * paper[strategy, k]) for k in keys if (strategy, k) in paper]
            if published:
                ax.plot(*zip(*published, strict=True), "x", color=color, markersize=8, label=f"{strategy}: the paper")
        ax.axhline(
            100 * dense.mean, color="black", linestyle="--", linewidth=1, label=f"dense ({100 * dense.mean:.1f}%)"
        )
        ax.axhspan(100 * (dense.mean - dense.std), 100 * (dense.mean + dense.std), color="black", alpha=0.07)
        ax.set_xscale("log")
        ax.set_xticks(remaining, [f"{r:.3g}" for r in remaining])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%, log scale): sparser to the right")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(title="strategy", fontsize=8)
    fig.suptitle(f"Accuracy vs sparsity (mean ± std over {dense.n} seeds)")
    return _png(fig)


def accuracy_vs_budget(
    sweep_params, sweep: dict, identical: dict[tuple[str, int | str], str], steps_per_epoch: int
) -> bytes:
    """One panel per sparsity: mean accuracy ± std against retraining epochs (an iteration budget
    at its fraction of an epoch), per strategy. A point where a strategy runs another's very plan
    (`identical`: (strategy, budget) → the other) is hollow, and the legend says so: its equality
    with the other is by construction."""
    epochs = {b: Duration.parse(b).steps(steps_per_epoch) / steps_per_epoch for b in sweep_params.budgets}
    panels = sweep_params.sparsities
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), dpi=120, squeeze=False)
    count = len(sweep_params.strategies)
    for ax, sp in zip(axes[0], panels, strict=True):
        for index, strategy in enumerate(sweep_params.strategies):
            points = [sweep[strategy, b][layout.sparsity_key(sp)] for b in sweep_params.budgets]
            dodge = 0.4 * (index - (count - 1) / 2)  # side by side, so equal values stay visible
            line = ax.errorbar(
                [epochs[b] + dodge for b in sweep_params.budgets],
                [100 * p.mean for p in points],
                yerr=[100 * p.std for p in points],
                marker=MARKERS[index % len(MARKERS)],
                capsize=3,
                label=strategy,
            )
            same = [(b, p) for b, p in zip(sweep_params.budgets, points, strict=True) if (strategy, b) in identical]
            if same:
                ax.plot(
                    [epochs[b] + dodge for b, _ in same],
                    [100 * p.mean for _, p in same],
                    linestyle="none",
                    marker=MARKERS[index % len(MARKERS)],
                    markerfacecolor="white",
                    color=line[0].get_color(),
                    label=f"{strategy}: same plan as {identical[strategy, same[0][0]]}",
                )
        ax.set_title(f"one-shot to {100 * sp:g}% sparsity")
        ax.set_xlabel("retraining budget (epochs)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(title="strategy", fontsize=8)
    return _png(fig)


def dense_training(histories: dict[int, list[dict]]) -> bytes:
    """Training loss (log scale) and learning rate of the dense run, one line per seed."""
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for seed, epochs in histories.items():
        loss_ax.plot([e["epoch"] + 1 for e in epochs], [e["train_loss"] for e in epochs], label=f"seed {seed}")
    first = next(iter(histories.values()))
    lr_ax.step([e["epoch"] + 1 for e in first], [e["lr"] for e in first], where="post")
    loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="training loss (log scale)", title="Dense training loss")
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title="Schedule lr(e): what strategies replay")
    lr_ax.set_yscale("log")
    loss_ax.legend(fontsize=8)
    for ax in (loss_ax, lr_ax):
        ax.grid(True, which="both", alpha=0.3)
    return _png(fig)
