"""The pipeline under real dvc, on a tiny config, in a temporary git repo.

One project is reproduced once per module and the tests then poke at it in order, the way a
user would: rerun, rerun one round, change a knob, run an experiment, feed it bad params.
"""

import hashlib
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_of, dvc, on_terminal, run

pytestmark = pytest.mark.slow

STRATEGIES, CONTROLS, ROUNDS = ["ft", "wr", "lrr"], ["reinit"], [0, 1]
ALL_STAGES = (
    {"validate", "prepare", "train", "evaluate", "report"}
    | {f"{kind}@{s}-round{r}" for kind in ("prune", "retrain") for s in STRATEGIES for r in ROUNDS}
    | {"export"}
    | {f"control@{s}-round{r}" for s in CONTROLS for r in ROUNDS}
    | {"sweep@ft", "sweep@lrr"}
)


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def reproduced(output: str) -> set[str]:
    """Stages that ran, or whose outputs DVC's run-cache restored from an identical earlier run."""
    restored = {line.split("'")[1] for line in output.splitlines() if "is cached - skipping run" in line}
    return ran(output) | restored


def outs_by_stage(lock_text: str) -> dict[str, list]:
    """Each stage's outputs (path and hash) as dvc.lock records them."""
    return {name: stage.get("outs", []) for name, stage in yaml.safe_load(lock_text)["stages"].items()}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(reproduced, tmp_path_factory) -> tuple[Path, str]:
    """The reproduced tiny project, copied: the tests below change it as a user would."""
    source, output = reproduced
    return copy_of(source, tmp_path_factory.mktemp("dvc") / "project"), output


def test_repro_runs_every_stage_once_and_prints_the_table(project):
    path, output = project
    assert ran(output) == ALL_STAGES
    assert "| round | sparsity |" in output and "| 1 | 75.00% |" in output
    metrics = json.loads((path / "results/metrics.json").read_text())
    evaluations = json.loads((path / "results/evaluations.json").read_text())
    assert set(metrics) == {"dense", *STRATEGIES, *CONTROLS}
    for strategy in STRATEGIES + CONTROLS:
        assert set(metrics[strategy]) == {"round0", "round1"}
        assert metrics[strategy]["round1"]["sparsity"] == pytest.approx(0.75, abs=1e-4)
        assert metrics[strategy]["round1"]["seeds"] == 2
        per_seed = [evaluations[strategy]["round1"][f"seed{s}"]["accuracy"] for s in (0, 1)]
        assert metrics[strategy]["round1"]["accuracy"] == pytest.approx(sum(per_seed) / 2)
    assert evaluations["dense"]["seed0"]["accuracy"] != evaluations["dense"]["seed1"]["accuracy"], "seeds differ"
    assert metrics["dense"]["accuracy"] > 0.8
    for png in ("accuracy_vs_sparsity", "accuracy_vs_budget", "dense_training"):
        assert (path / f"reports/{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (path / "reports/report.md").read_text()
    for section in ("Which strategy wins", "Safe compression", "FLOPs", "retraining budget", "paper's claim"):
        assert section in report
    shipped = report.split("### Shipped files")[1].split("\n## ")[0]
    rows = [line for line in shipped.splitlines() if line.startswith("| 1 |")]
    # every strategy's compact file is the same size (the same count of weights survives): one column
    assert "| round | compact |" in shipped and len(rows) == 1 and len(rows[0].split("|")) == 2 + 1 + 1
    assert all(0 < float(cell.strip().rstrip("%")) < 100 for cell in rows[0].split("|")[2:-1]), "smaller than dense"
    assert (path / "reports/budget.csv").read_text().splitlines()[0] == "sparsity,budget,ft,lrr"


def test_every_training_run_has_its_live_curves_and_dvc_plots_shows_them(project, tmp_path):
    """dvclive curves of the dense run and of every retraining, one row per epoch trained; the
    plots of dvc.yaml, templated on params (first seed, last round), all found."""
    path, _ = project
    runs = [path / "runs/dense"] + [path / f"runs/{s}/round-{r}" for s in STRATEGIES + CONTROLS for r in ROUNDS]
    for run_dir in runs:
        for seed in (0, 1):
            epochs = json.loads((run_dir / f"history/seed-{seed}.json").read_text())["epochs"]
            loss = (run_dir / f"live/seed-{seed}/plots/metrics/train_loss.tsv").read_text().splitlines()
            assert [float(row.split("\t")[1]) for row in loss[1:]] == [e["train_loss"] for e in epochs], run_dir
    shown = json.loads(dvc("plots", "show", "--json", "-o", str(tmp_path / "plots"), cwd=path).stdout)
    assert "errors" not in shown
    files = {
        point["filename"] for point in shown["data"]["retraining loss, last round"][0]["content"]["data"]["values"]
    }
    assert files == {f"{s}/round-1/live/seed-0/plots/metrics/train_loss.tsv" for s in STRATEGIES}  # DVC drops runs/


def test_a_control_retrains_on_its_reference_masks_byte_for_byte_in_every_round(project):
    """reinit is "the same mask, fresh weights": lrr's masks in round 0 and in round 1 (where a
    chain of its own would have pruned its own retrained network), with weights of its own."""
    path, _ = project
    for round_id in ROUNDS:
        for seed in (0, 1):
            ours, reference = (path / f"runs/{s}/round-{round_id}" for s in ("reinit", "lrr"))
            name = f"seed-{seed}.safetensors"
            assert (ours / "masks" / name).read_bytes() == (reference / "masks" / name).read_bytes()
            assert (ours / "models" / name).read_bytes() != (reference / "models" / name).read_bytes()
    report = (path / "reports/report.md").read_text()
    assert "Controls (reinit) retrain each round on lrr's masks of that round, byte for byte." in report
    lock = yaml.safe_load((path / "dvc.lock").read_text())["stages"]["control@reinit-round1"]
    assert "runs/lrr/round-1/masks" in {dep["path"] for dep in lock["deps"]}, "DVC knows where the masks come from"


def test_second_repro_does_nothing_and_status_is_clean(project):
    path, _ = project
    assert ran(dvc("repro", cwd=path).stdout) == set()
    assert "up to date" in dvc("status", cwd=path).stdout


def test_every_written_file_is_a_declared_output(project):
    path, _ = project
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    declared = [out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])]
    status = run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], path).stdout
    stray = []
    for line in status.splitlines():
        file = line[3:]
        if "__pycache__" in file or file.startswith((".dvc/", ".rewind/")):
            continue  # DVC's own files; rewind's bookkeeping (scratch progress, locks, timings)
        if not any(file == d or file.startswith(d.rstrip("/") + "/") for d in declared):
            stray.append(file)
    assert stray == []
    tracked = run(["git", "ls-files"], path).stdout.split()
    for out in ("results/metrics.json", "results/headline.json", "reports/report.md", "reports/accuracy.csv"):
        assert out in tracked and out in declared


def test_one_round_reruns_on_its_own_with_identical_results(project):
    path, _ = project
    before = yaml.safe_load((path / "dvc.lock").read_text())["stages"]["retrain@lrr-round1"]
    output = dvc("repro", "-f", "-s", "--no-run-cache", "retrain@lrr-round1", cwd=path).stdout
    assert ran(output) == {"retrain@lrr-round1"}
    after = yaml.safe_load((path / "dvc.lock").read_text())["stages"]["retrain@lrr-round1"]
    for kind in ("models", "live"):
        out = next(o for o in after["outs"] if o["path"].endswith(f"/{kind}"))
        assert out in before["outs"], f"same params and seeds must give the same {kind}, bit for bit"


def test_one_strategy_knob_marks_only_that_strategy_stale(project):
    path, _ = project
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["strategies"]["wr"]["budget"] = 3
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stale = set(json.loads(dvc("status", "--json", cwd=path).stdout))
    finally:
        run(["git", "checkout", "params.yaml"], path)
    assert {"retrain@wr-round0", "retrain@wr-round1"} <= stale
    # validate checks all of params.yaml and report prints every budget; no other strategy's
    # stage, nor dense training, nor evaluation is stale.
    assert stale - {"validate", "report"} <= {s for s in ALL_STAGES if "@wr-" in s}
    assert not any(s.startswith("sweep@") for s in stale), "wr is not in the tiny sweep"


def test_bad_params_fail_in_one_line_and_touch_no_output(project):
    path, _ = project
    before = tree_digest(path / "runs") | tree_digest(path / "results")
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["strategies"]["ft"]["budget"] = 99
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = dvc("repro", cwd=path, check=False)
    finally:
        run(["git", "checkout", "params.yaml"], path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: params.yaml: strategies.ft.budget: 99 is larger than train.epochs (4)"]
    after = tree_digest(path / "runs") | tree_digest(path / "results")
    assert after == before


def test_experiment_then_metrics_diff_shows_the_headline_changes(project):
    path, _ = project
    dvc("exp", "run", "-S", "strategies.lrr.budget=4", cwd=path)
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=path).stdout)
    assert list(diff) == ["results/headline.json"], "the headline is the one DVC metric"
    changed = diff["results/headline.json"]
    assert {"lrr.accuracy.round0", "lrr.accuracy.round1"} <= changed.keys(), "changing lrr's budget changes lrr"
    # reinit retrains on lrr's masks, and lrr's round-1 masks come from its retrained round 0;
    # the verdict's lrr - ft moves with lrr, its wr - ft does not
    assert {key.split(".")[0] for key in changed} <= {"lrr", "reinit", "verdict"}
    assert "verdict.lrr_minus_ft.mean" in changed and not any("wr_minus_ft" in key for key in changed)
    shown = json.loads(dvc("exp", "show", "--json", cwd=path).stdout)
    budgets = [
        rev["data"]["params"]["params.yaml"]["data"]["strategies"]["lrr"]["budget"]
        for commit in shown
        for experiment in commit.get("experiments") or []
        for rev in experiment["revs"]
    ]
    assert 4 in budgets, "the experiment is recorded with its parameter"


def exps_command() -> list[str]:
    """`make exps`'s command, from the Makefile (the project copies carry no Makefile)."""
    makefile = (ROOT / "Makefile").read_text()
    drop = re.search(r"^EXPS_DROP := (.*)$", makefile, re.MULTILINE).group(1).replace("$$", "$")
    recipe = re.search(r"^exps: setup\n\t(.*)$", makefile, re.MULTILINE).group(1)
    return [sys.executable, "-m", *shlex.split(recipe.replace("$(EXPS_DROP)", drop))]


def test_the_experiments_table_fits_a_200_column_terminal(project):
    """After `dvc exp run -S strategies.lrr.budget=4` above: `make exps` on a 200-column terminal
    shows the experiment's name, the changed param and the verdict, none of them cut."""
    path, _ = project
    (name,) = dvc("exp", "list", "--name-only", cwd=path).stdout.split()
    shown = re.sub(r"\x1b\[[0-9;]*m", "", on_terminal(exps_command(), path, columns=200))  # no colours
    lines = [line for line in shown.splitlines() if line.strip()]
    assert max(len(line.rstrip()) for line in lines) <= 200
    for cell in (name, "strategies.lrr.budget", "verdict.lrr_minus_ft.mean", "workspace"):
        assert cell in shown, (cell, shown)
    assert "runs/" not in shown and "md5" not in shown


def test_clean_clone_reproduces_every_stage_bit_identically(project, tmp_path):
    path, _ = project
    run(["git", "checkout", "-f", "main"], path)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(path), str(clone)], tmp_path)
    output = dvc("repro", cwd=clone).stdout
    # validate, evaluate and report write git-tracked files: once the stages before them have
    # reproduced identical outputs, DVC rightly finds them up to date. A stage whose outputs the
    # clone already computed under another name (lrr replays ft's rates in this tiny config, wr
    # and ft prune round 0 alike) is restored from DVC's content-addressed cache.
    assert reproduced(output) >= ALL_STAGES - {"validate", "evaluate", "report"}
    assert {"train", "retrain@wr-round1"} <= ran(output)
    committed = run(["git", "show", "main:results/metrics.json"], path).stdout
    assert (clone / "results/metrics.json").read_text() == committed
    committed_lock = run(["git", "show", "main:dvc.lock"], path).stdout
    assert outs_by_stage((clone / "dvc.lock").read_text()) == outs_by_stage(committed_lock)
    # dvc.lock, results/ and reports/ byte-identical to the committed ones; bookkeeping in
    # .rewind/ is git-ignored: a fresh clone's run leaves git clean.
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
