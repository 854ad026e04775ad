"""stages.report on real stage outputs: it writes the report, and a missing or malformed input
stops it with one line naming the file, leaving the previous report as it was."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_project, run, tiny_params

REPORT = "reports/report.md"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A tiny project whose stages ran once, in order, up to and including the report."""
    params = tiny_params(compare=["ft", "lrr"], rounds=[{"id": 0, "prev": "../dense"}])
    params["sweep"]["strategies"] = ["lrr"]
    project = make_project(tmp_path_factory.mktemp("report") / "p", params)
    for stage in ("validate", "prepare", "train"):
        run([sys.executable, "-m", f"stages.{stage}"], project)
    for stage in ("prune", "retrain"):
        for strategy in ("ft", "lrr"):
            run([sys.executable, "-m", f"stages.{stage}", "--strategy", strategy, "--round", "0"], project)
    run([sys.executable, "-m", "stages.sweep", "--strategy", "lrr"], project)
    run([sys.executable, "-m", "stages.evaluate"], project)
    run([sys.executable, "-m", "stages.report"], project)
    return project


def report(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stages.report"], cwd=project, capture_output=True, text=True, check=False
    )


def test_report_has_the_comparison_tables(built):
    text = (built / REPORT).read_text()
    assert "| round | sparsity | ft | lrr |" in text
    assert "## Safe compression" in text and "## Accuracy against retraining budget" in text


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
        ("results/sweep/lrr.json", drop_a_budget, "results/sweep/lrr.json: no accuracies for every sweep budget"),
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
