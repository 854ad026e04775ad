"""stages.report on real stage outputs: it writes the report, and a missing or malformed input
stops it with one line naming the file, leaving the previous report as it was."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy import stats

from pipeline.results import flatten
from rewind.stats import Summary, summarize
from stages.report import headline_metrics
from stages.shared.params import load_params
from tests.conftest import ROOT, copy_of, run

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
    text = (built / REPORT).read_text()
    assert ("finding — both rewinding strategies above fine-tuning — **holds**" in text) == above
    assert ("**is not supported**" in text) == (not above)


def test_one_seed_gives_no_verdict(built, tmp_path):
    project = copy_of(built, tmp_path / "p")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["seeds"] = [0]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run([sys.executable, "-m", "stages.report"], project)
    text = (project / REPORT).read_text()
    assert "cannot be judged: one seed gives no confidence interval" in text
    assert "holds" not in text.split("##")[0]
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
    assert f"Dense network: **{percent(metrics['dense']['accuracy'])} ± " in text
    for k in (0, 1):
        row = next(line for line in text.splitlines() if line.startswith(f"| {k} | ") and " ± " in line)
        means = [cell.strip("* ").split(" ± ")[0] for cell in row.split("|")[3:-1]]
        assert means == [percent(metrics[s]["accuracy"][f"round{k}"]) for s in ("ft", "wr", "lrr", "reinit")]
    for s in ("ft", "wr", "lrr", "reinit"):
        safe = metrics[s]["safe_sparsity"]
        assert f"| {s} | {'none' if safe is None else percent(safe) + '%'} |" in text
    verdict = metrics["verdict"]
    for name, label in (("wr_minus_ft", "wr − ft"), ("lrr_minus_ft", "lrr − ft")):
        gain = verdict[name]
        printed = f"{label} {'**' if gain['low'] > 0 or gain['high'] < 0 else ''}{100 * gain['mean']:+.2f} "
        assert printed + f"[{100 * gain['low']:+.2f}, {100 * gain['high']:+.2f}]" in text.split("##")[0]
    assert f"At the highest sparsity ({percent(verdict['sparsity'])}%)" in text
    assert ("**holds**" in text) == verdict["holds"]


def test_the_headline_metric_is_a_few_stable_keys_on_the_default():
    """On the default params, two runs whose numbers differ share every key (so `dvc exp show`
    columns and `dvc metrics diff` rows line up), and there are a few dozen, not hundreds: dense,
    6 strategies x (6 rounds + safe sparsity), 8 for the verdict."""
    params = load_params(ROOT / "params.yaml")

    def keys(rng: random.Random) -> list[str]:
        def accuracy() -> Summary:
            return summarize([rng.uniform(0.2, 1.0) for _ in params.seeds])

        rounds = {s: {spec.id: accuracy() for spec in params.rounds} for s in params.retrained}
        sparsity = {spec.id: 1 - rng.uniform(0.01, 0.5) ** (spec.id + 1) for spec in params.rounds}
        return sorted(flatten(headline_metrics(params, rounds, sparsity, accuracy())))

    first, second = keys(random.Random(0)), keys(random.Random(1))
    assert first == second
    assert len(first) == 1 + len(params.retrained) * (len(params.rounds) + 1) + 8 == 51
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
