"""stages.report on real stage outputs: it writes the report, and a missing or malformed input
stops it with one line naming the file, leaving the previous report as it was."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy import stats

from tests.conftest import copy_of, run

REPORT = "reports/report.md"


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
