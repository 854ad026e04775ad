"""stages.report on real stage outputs: it writes the report, and a missing or malformed input
stops it with one line naming the file, leaving the previous report as it was."""

import itertools
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from scipy import stats

from pipeline.results import flatten
from rewind.checkpoint import load_tensors, save_tensors
from rewind.metrics import relative_distance
from rewind.stats import Summary, summarize
from stages.report import by_strategy, headline_metrics
from stages.shared.params import load_params
from tests.conftest import ROOT, copy_of, dvc, make_project, run, tiny_params

REPORT = "reports/report.md"
HEADLINE = "results/headline.json"


@pytest.fixture(scope="module")
def built(reproduced, tmp_path_factory) -> Path:
    """The reproduced tiny project (ft, wr, lrr; 2 rounds; 2 seeds; a sweep of ft and lrr), copied."""
    return copy_of(reproduced[0], tmp_path_factory.mktemp("report") / "p")


def report(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.report"], cwd=project, capture_output=True, text=True, check=False
    )


def test_report_has_the_comparison_tables(built):
    text = (built / REPORT).read_text()
    assert "| round | sparsity | ft | wr | lrr |" in text
    assert "## Safe compression" in text and "## Accuracy against retraining budget" in text
    assert "| round | sparsity | wr − ft | lrr − ft |" in text, "paired differences against ft"
    assert "rests on 360 test images" in text, "digits: 450 test images, 90 of them held out for validation"


def test_the_headline_verdict_follows_the_paired_intervals(built):
    """Recomputed from evaluations.json with scipy: the verdict is "holds" exactly when both
    paired 95% intervals (wr - ft, lrr - ft, at the last round) lie above zero."""
    evaluations = json.loads((built / "results/evaluations.json").read_text())
    accuracy = {s: [evaluations[s]["round1"][f"seed{k}"]["accuracy"] for k in (0, 1)] for s in ("ft", "wr", "lrr")}
    above = all(stats.ttest_rel(accuracy[s], accuracy["ft"]).confidence_interval(0.95).low > 0 for s in ("wr", "lrr"))
    first = (built / REPORT).read_text().splitlines()[0]
    assert first.startswith("**The paper's claim holds** at 75.00% sparsity") == above, first
    assert first.startswith("**The paper's claim is not supported** at 75.00% sparsity") == (not above), first


def test_one_seed_gives_no_verdict(built, tmp_path):
    project = copy_of(built, tmp_path / "p")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["seeds"] = [0]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    # lrr repeats ft's plan here (a tie on validation); ahead on validation, it wins without an interval
    edit_evaluations(project, {("lrr", k): {"val_accuracy": [1.0]} for k in (0, 1)})
    run([sys.executable, "-m", "stages.report"], project)
    text = (project / REPORT).read_text()
    assert text.startswith("**The paper's claim cannot be judged** at 75.00% sparsity (74.39% of all parameters): ")
    assert "one seed gives no interval" in text.splitlines()[0] and "holds" not in text.splitlines()[0]
    assert "no verdict (1 seed)" in text
    one_seed = json.loads((project / HEADLINE).read_text())
    assert flatten(one_seed).keys() == flatten(json.loads((built / HEADLINE).read_text())).keys(), "the same columns"
    assert one_seed["verdict"]["holds"] is None and one_seed["verdict"]["wr_minus_ft"]["low"] is None


def test_identical_plans_are_marked_not_compared(built):
    """In the tiny config (4 epochs, milestone 2) lrr replays only the final rate at budgets 1
    and 2, as fine-tuning does: the sweep marks both, and ft and lrr match bit for bit there."""
    text = (built / REPORT).read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| 90.0% | 1 |", "| 90.0% | 2 |"))]
    assert len(rows) == 2 and all(row.endswith("| ≡ ft (same plan) |") for row in rows)
    sweep = {s: json.loads((built / f"results/sweep/{s}.json").read_text())["budgets"] for s in ("ft", "lrr")}
    assert sweep["ft"] == sweep["lrr"], "the same plan gives the same numbers"


def test_the_best_budget_is_chosen_on_validation(built):
    text = (built / REPORT).read_text()
    sweep = json.loads((built / "results/sweep/lrr.json").read_text())["budgets"]
    means = {b: sum(v["0.9"]["val_accuracy"]) / 2 for b, v in sweep.items()}
    best = max(sorted(means, key=int), key=lambda b: means[b])  # the first budget wins a tie
    row = next(line for line in text.splitlines() if line.startswith("| 90.0% |") and "epochs:" in line)
    assert row.split("|")[3].strip().startswith(f"{best} epochs:"), row


def percent(value: float) -> str:
    return f"{100 * value:.2f}"


def test_the_headline_metric_holds_what_the_report_prints(built):
    """Every number of results/headline.json, rounded as the report rounds it, is the number the
    report prints: accuracy per strategy and round, safe sparsity, the verdict's intervals."""
    metrics = json.loads((built / HEADLINE).read_text())
    text = (built / REPORT).read_text()
    assert f"dense network **{percent(metrics['dense']['accuracy'])} ± " in text
    for k in (0, 1):
        row = next(line for line in text.splitlines() if line.startswith(f"| {k} | ") and " ± " in line)
        means = [cell.strip("* ").split(" ± ")[0] for cell in row.split("|")[3:-1]]
        assert means == [percent(metrics[s]["accuracy"][f"round{k}"]) for s in ("ft", "wr", "lrr", "reinit")]
    for s in ("ft", "wr", "lrr", "reinit"):
        safe = metrics[s]["safe_sparsity"]
        assert f"| `{s}` | {'—' if safe is None else percent(safe) + '%'} |" in text
    verdict = metrics["verdict"]
    first = text.splitlines()[0]
    for name, label in (("wr_minus_ft", "wr − ft"), ("lrr_minus_ft", "lrr − ft")):
        gain = verdict[name]
        assert f"{label} {100 * gain['mean']:+.2f} [{100 * gain['low']:+.2f}, {100 * gain['high']:+.2f}]" in first
    assert f"at {percent(verdict['sparsity'])}% sparsity ({percent(verdict['network_sparsity'])}% of all" in first
    assert first.startswith("**The paper's claim holds**") == verdict["holds"]
    assert verdict["ft_trains"] is True and "did not train" not in text


def test_the_headline_metric_is_a_few_stable_keys_on_the_default():
    """On the default params, two runs whose numbers differ share every key (so `dvc exp show`
    columns and `dvc metrics diff` rows line up), and there are a few dozen, not hundreds: dense,
    6 strategies x (6 rounds + safe sparsity), 10 for the verdict (sparsity of the prunable weights
    and of all parameters, two intervals, whether it holds and whether fine-tuning trained)."""
    params = load_params(ROOT / "params.yaml")

    def keys(rng: random.Random) -> list[str]:
        def accuracy() -> Summary:
            return summarize([rng.uniform(0.2, 1.0) for _ in params.seeds])

        def per_round() -> dict:
            return {s: {spec.id: accuracy() for spec in params.rounds} for s in params.retrained}

        sparsity = {spec.id: 1 - rng.uniform(0.01, 0.5) ** (spec.id + 1) for spec in params.rounds}
        network = {k: 0.99 * value for k, value in sparsity.items()}
        trains = rng.random() < 0.5
        metrics = headline_metrics(params, per_round(), per_round(), sparsity, network, accuracy(), accuracy(), trains)
        return sorted(flatten(metrics))

    first, second = keys(random.Random(0)), keys(random.Random(1))
    assert first == second
    assert len(first) == 1 + len(params.retrained) * (len(params.rounds) + 1) + 10 == 53
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", key) for key in first), first


def spoil_json(path: Path) -> None:
    path.write_text('{"dense": ')


def drop_a_budget(path: Path) -> None:
    data = json.loads(path.read_text())
    del data["budgets"]["2"]
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("target", "damage", "expected"),
    [
        ("results/metrics.json", Path.unlink, "results/metrics.json: file not found"),
        ("results/metrics.json", spoil_json, "results/metrics.json: not valid JSON"),
        ("results/evaluations.json", spoil_json, "results/evaluations.json: not valid JSON"),
        ("results/sweep/lrr.json", Path.unlink, "results/sweep/lrr.json: file not found"),
        ("results/sweep/lrr.json", drop_a_budget, "results/sweep/lrr.json: no accuracy for every sweep budget"),
    ],
    ids=["metrics-missing", "metrics-malformed", "evaluations-malformed", "sweep-missing", "sweep-incomplete"],
)
def test_bad_input_is_one_line_naming_the_file_and_the_report_stays(built, target, damage, expected):
    path = built / target
    good, before = path.read_bytes(), (built / REPORT).read_bytes()
    try:
        damage(path)
        result = report(built)
    finally:
        path.write_bytes(good)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {expected}")
    assert "Traceback" not in result.stderr
    assert (built / REPORT).read_bytes() == before


def rerun(project: Path) -> str:
    """The report of `project` written anew; its text."""
    run([sys.executable, "-m", "stages.report"], project)
    return (project / REPORT).read_text()


def edit_evaluations(project: Path, values: dict[tuple[str, int], dict[str, list[float]]]) -> None:
    """Set (strategy, round) → key → per-seed values in results/evaluations.json."""
    path = project / "results/evaluations.json"
    evaluations = json.loads(path.read_text())
    for (strategy, round_id), keys in values.items():
        for key, per_seed in keys.items():
            for seed, value in enumerate(per_seed):
                evaluations[strategy][f"round{round_id}"][f"seed{seed}"][key] = value
    path.write_text(json.dumps(evaluations))


def row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_the_first_line_is_the_claim_the_verdict_and_both_intervals(built):
    """The answer comes first, as one paragraph: no preamble before it."""
    lines = (built / REPORT).read_text().splitlines()
    first = lines[0]
    assert first.startswith("**The paper's claim ") and " at 75.00% sparsity (74.39% of all parameters): " in first
    assert re.search(r"wr − ft [+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\] and lrr − ft [+-]\d+\.\d\d \[", first)
    assert lines[1] == "" and lines[2] == "# Retraining after pruning"


def test_every_paragraph_is_one_line(built):
    """Prefect's artifact shows a hard line break as one: prose lines never follow one another (tables
    and lists do, a row or an item a line)."""
    lines = (built / REPORT).read_text().splitlines()
    for before, after in itertools.pairwise(lines):
        prose = before and not before.startswith(("|", "- ", "#", "!["))
        assert not (prose and after), f"a paragraph broken over lines: {before!r} / {after!r}"


def test_choices_are_made_on_validation_and_reported_on_test(built, tmp_path):
    """At 75%, ft is best on validation and worst on test: it gets the bold and the win (its lead
    measured on test, negative), and its safe sparsity is 75% because validation says so."""
    project = copy_of(built, tmp_path / "p")
    edit_evaluations(
        project,
        {
            ("ft", 1): {"accuracy": [0.10, 0.10], "val_accuracy": [1.0, 1.0]},
            ("wr", 1): {"accuracy": [0.95, 0.96], "val_accuracy": [0.5, 0.5]},
            ("lrr", 1): {"accuracy": [0.90, 0.91], "val_accuracy": [0.6, 0.6]},
            ("reinit", 1): {"accuracy": [0.2, 0.2], "val_accuracy": [0.1, 0.1]},
        },
    )
    text = rerun(project)
    assert row(text, "| 1 | 75.00% |") == (
        "| 1 | 75.00% | **10.00 ± 0.00** | 95.50 ± 0.71 | 90.50 ± 0.71 | 20.00 ± 0.00 |"
    )
    assert row(text, "| 75.00% | `ft`") == (
        "| 75.00% | `ft` | `lrr` | **-80.50 [-86.85, -74.15]** | no: runner-up ahead |"
    )
    assert row(text, "| `ft` |") == "| `ft` | 75.00% | 10.00 ± 0.00 |"
    assert json.loads((project / HEADLINE).read_text())["ft"]["safe_sparsity"] == 0.75


@pytest.mark.parametrize("compare", [["ft", "wr", "lrr"], ["ft", "lrr", "wr"]])
def test_a_tie_on_validation_is_reported_as_a_tie_in_any_order(built, tmp_path, compare):
    """wr and lrr with the same validation mean at 50%: both bold, no winner, whichever comes first."""
    project = copy_of(built, tmp_path / "p")
    edit_evaluations(
        project,
        {
            ("wr", 0): {"val_accuracy": [0.9, 0.8], "accuracy": [0.7, 0.7]},
            ("lrr", 0): {"val_accuracy": [0.8, 0.9], "accuracy": [0.9, 0.9]},
            ("ft", 0): {"val_accuracy": [0.5, 0.5]},
            ("reinit", 0): {"val_accuracy": [0.1, 0.1]},
        },
    )
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["compare"] = compare
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    text = rerun(project)
    tied = ", ".join(f"`{s}`" for s in compare if s != "ft")
    assert row(text, "| 50.00% | tie") == f"| 50.00% | tie: {tied} | — | — | no: a tie |"
    cells = dict(
        zip(["round", "sparsity", *compare, "reinit"], row(text, "| 0 | 50.00% |").split("|")[1:-1], strict=True)
    )
    assert cells["wr"].strip() == "**70.00 ± 0.00**" and cells["lrr"].strip() == "**90.00 ± 0.00**"


def test_a_mask_whose_density_disagrees_with_its_round_is_refused_not_averaged(built, tmp_path):
    """A hand-made all-ones mask in ft's round 1 (its hash right): evaluate measures it, the report
    refuses it in one line naming the file, and the previous report stays."""
    project = copy_of(built, tmp_path / "p")
    mask = project / "runs/ft/round-1/masks/seed-0.safetensors"
    masks, meta = load_tensors(mask)
    save_tensors(mask, {name: torch.ones_like(m) for name, m in masks.items()}, meta)
    run([sys.executable, "-m", "stages.evaluate"], project)
    before = (project / REPORT).read_bytes()
    result = report(project)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: runs/ft/round-1/masks/seed-0.safetensors: prunes 0.00% of the prunable weights where round 1's "
        "other masks prune 75.00%: refused, not averaged; prune that round again"
    )
    assert (project / REPORT).read_bytes() == before


def test_wr_and_lrr_starting_from_nearly_the_same_weights_is_said(built, tmp_path):
    """The report says wr and lrr start almost alike exactly when the dense weights wr rewinds to
    (epoch 2 at budget 2) lie within 2% of the final ones, computed here from the checkpoints; with
    the rewind point put 0.1% from them (each seed's final weights times 1.001) it says so, with
    that distance."""
    distances = [
        relative_distance(
            load_tensors(built / f"runs/dense/checkpoints/seed-{seed}/epoch-002.safetensors")[0],
            load_tensors(built / f"runs/dense/checkpoints/seed-{seed}/epoch-004.safetensors")[0],
        )
        for seed in (0, 1)
    ]
    said = "**wr and lrr start from nearly the same weights**"
    assert (said in (built / REPORT).read_text()) == (max(distances) < 0.02)
    project = copy_of(built, tmp_path / "p")
    for seed in (0, 1):
        final, meta = load_tensors(project / f"runs/dense/checkpoints/seed-{seed}/epoch-004.safetensors")
        moved = {name: t * 1.001 if t.is_floating_point() else t for name, t in final.items()}
        save_tensors(project / f"runs/dense/checkpoints/seed-{seed}/epoch-002.safetensors", moved, meta)
    caveat = row(rerun(project), f"- {said}")
    assert "(budget 2 epochs) lie 0.10% from the final ones lrr starts from" in caveat, caveat


def test_sizes_equal_for_every_strategy_are_one_column(built):
    """Every strategy prunes a round to the same count: parameters, sparsity, FLOPs and file sizes
    are one column each, not one per strategy; the whole-network sparsity is the evaluations'."""
    text = (built / REPORT).read_text()
    evaluations = json.loads((built / "results/evaluations.json").read_text())
    network = evaluations["lrr"]["round1"]["seed0"]["network_sparsity"]
    assert "| round | params left (×) | sparsity of all params | FLOPs |" in text
    assert row(text, "| 1 | 12,960 (3.9×) |").split("|")[3].strip() == f"{100 * network:.2f}%"
    assert "| round | compact |" in text


def test_values_that_differ_by_strategy_keep_a_column_each():
    values = {("a", 0): "1", ("b", 0): "1", ("a", 1): "2", ("b", 1): "3"}
    lines = by_strategy(["a", "b"], "round", [("x", lambda s, k: values[s, k]), ("y", lambda s, k: "7")], [0, 1])
    assert lines[0] == "| round | a x | b x | y |" and lines[3] == "| 1 | 2 | 3 | 7 |"


def test_no_value_reads_dash_and_strategies_read_as_code(built):
    """`none` names a strategy; an empty cell is "—". No table cell says none for "no value"."""
    text = (built / REPORT).read_text()
    cells = {c.strip() for line in text.splitlines() if line.startswith("|") for c in line.split("|")}
    assert "none" not in cells and "**none**" not in cells
    assert row(text, "| `ft` |").startswith("| `ft` | ")


OFF_DEFAULT = {
    # fine-tuning at a cosine's last rate (3e-4 of lr over 8 epochs of 11 steps), the last layer kept
    # whole, one-shot pruning to 99% of the prunable weights, `none` beside the paper's three
    "train": {"epochs": 8, "schedule": "cosine", "warmup_epochs": 1, "milestones": []},
    "prune": {"schedule": "oneshot", "sparsities": [0.5, 0.99], "exclude": ["5.weight"]},
    "compare": ["ft", "wr", "lrr", "none", "ft_lr"],
    "controls": {"masks_from": "lrr", "strategies": []},
    "rounds": [{"id": 0, "prev": "../dense"}, {"id": 1, "prev": "../dense"}],
    "sweep": {"strategies": ["ft"], "sparsities": [0.9], "budgets": [1]},
}


@pytest.fixture(scope="module")
def off_default(tmp_path_factory) -> Path:
    """A tiny project off the default in the ways the report must not hide, through `dvc repro`."""
    params = tiny_params()
    for key, value in OFF_DEFAULT.items():
        params[key] = params[key] | value if isinstance(value, dict) and key in ("train", "prune") else value
    params["strategies"]["ft_lr"] = {"weights": "final", "rates": "constant", "budget": 2, "lr": 0.001}  # the remedy
    path = make_project(tmp_path_factory.mktemp("off") / "p", params)
    dvc("repro", cwd=path)
    return path


def test_a_fine_tuning_that_cannot_train_is_said_first(off_default, tmp_path):
    text = (off_default / REPORT).read_text()
    first = text.splitlines()[0]
    assert "fine-tuning did not train** at 99.00% sparsity" in first
    assert "ft: its rate, 3.2e-05, is below 0.001 of train.lr (0.1), too small to move the weights." in first
    caveat = row(text, "- **Fine-tuning did not train**")
    evaluations = json.loads((off_default / "results/evaluations.json").read_text())
    ft, none = ([evaluations[s]["round1"][f"seed{k}"]["accuracy"] for k in (0, 1)] for s in ("ft", "none"))
    low, high = stats.ttest_rel(ft, none).confidence_interval(0.95) if ft != none else (0.0, 0.0)
    assert ("it scores as `none`" in caveat) == (low <= 0 <= high or ft == none), caveat
    assert json.loads((off_default / HEADLINE).read_text())["verdict"]["ft_trains"] is False
    assert "Fine-tuning at a stated rate, `ft_lr` (lr 0.001): " in caveat and "wr − ft_lr " in caveat
    project = copy_of(off_default, tmp_path / "p")  # without the remedy compared, the report offers it
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["compare"].remove("ft_lr")
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    offered = row(rerun(project), "- **Fine-tuning did not train**")
    assert (
        "compare a strategy that states one, e.g. `ft_lr: {weights: final, rates: constant, budget: 2, lr: 0.001}`"
        in offered
    )


def test_fine_tuning_at_a_stated_rate_moves_the_weights_where_ft_cannot(off_default):
    """strategies.ft_lr.lr reaches the retraining: its weights leave the pruned start, ft's barely do."""
    start = load_tensors(off_default / "runs/dense/models/seed-0.safetensors")[0]
    masks = load_tensors(off_default / "runs/ft/round-1/masks/seed-0.safetensors")[0]
    pruned = {n: t * masks[n] if n in masks else t for n, t in start.items()}
    moved = {
        s: relative_distance(load_tensors(off_default / f"runs/{s}/round-1/models/seed-0.safetensors")[0], pruned)
        for s in ("ft", "ft_lr")
    }
    assert moved["ft_lr"] > 10 * moved["ft"], moved


def test_a_sparsity_with_excluded_layers_is_given_of_all_parameters_too(off_default):
    """prune.exclude keeps the last layer (1,000 weights) whole: 99% of the prunable weights is
    1 - (492 + 1,000 + 410 biases) / 50,610 of all parameters."""
    whole = 1 - (492 + 1000 + 410) / 50610
    text = (off_default / REPORT).read_text()
    assert f"at 99.00% sparsity ({100 * whole:.2f}% of all parameters)" in text.splitlines()[0]
    caveat = row(text, "- **Sparsity counts the prunable weights**")
    assert f"keeps `5.weight` whole, so 99.00% of the prunable weights is {100 * whole:.2f}% of all" in caveat
    verdict = json.loads((off_default / HEADLINE).read_text())["verdict"]
    assert verdict["sparsity"] == pytest.approx(0.99, abs=1e-4)
    assert verdict["network_sparsity"] == pytest.approx(whole)
