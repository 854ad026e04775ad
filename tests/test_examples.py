"""The examples' model and dataset of your own, through the whole pipeline under real DVC."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from rewind.checkpoint import load_tensors
from tests.conftest import ROOT, dvc, make_project, run, tiny_params

pytestmark = pytest.mark.slow
PLUGGED = {
    "data.name": "plugins.two_moons:load",
    "data.input_shape": [2],
    "data.num_classes": 2,
    "model.name": "plugins.small_mlp:build",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A tiny project whose plugins/ holds the examples, reproduced once."""
    path = make_project(tmp_path_factory.mktemp("examples") / "project", tiny_params(**PLUGGED))
    for example in ("two_moons.py", "small_mlp.py"):
        shutil.copy(ROOT / "examples" / example, path / "plugins" / example)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "plug in the examples"], path)
    dvc("repro", cwd=path)
    return path


def test_the_examples_run_through_dvc_repro(project):
    metrics = json.loads((project / "results/metrics.json").read_text())
    assert {"dense", "ft", "wr", "lrr", "reinit"} <= set(metrics)
    assert metrics["dense"]["accuracy"] > 0.75, "two moons are easy for a small MLP"
    assert metrics["lrr"]["round1"]["sparsity"] == pytest.approx(0.75, abs=1e-3)
    weights, _ = load_tensors(project / "runs/dense/models/seed-0.safetensors")
    assert {name: tuple(t.shape) for name, t in weights.items()} == {
        "1.weight": (64, 2),
        "1.bias": (64,),
        "3.weight": (64, 64),
        "3.bias": (64,),
        "5.weight": (2, 64),
        "5.bias": (2,),
    }
    assert "plugins.small_mlp:build on plugins.two_moons:load" in (project / "reports/report.md").read_text()
    assert "up to date" in dvc("status", cwd=project).stdout


def test_editing_your_model_makes_dvc_rerun_what_it_built(project):
    module = project / "plugins/small_mlp.py"
    original = module.read_text()
    module.write_text(original.replace("64", "32"))
    try:
        stale = set(json.loads(dvc("status", "--json", cwd=project).stdout))
    finally:
        module.write_text(original)
    assert {"validate", "train", "prune@ft-round0", "retrain@lrr-round1", "evaluate"} <= stale


def test_a_wrong_import_path_is_one_line_and_writes_nothing(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["name"] = "plugins.small_mlp:biuld"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = (project / "results/params.ok").read_bytes()
    try:
        result = run([sys.executable, "-m", "stages.validate"], project, check=False)
    finally:
        run(["git", "checkout", "params.yaml"], project)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2
    assert errors == [
        "error: params.yaml: model.name: 'plugins.small_mlp:biuld': module plugins.small_mlp has no 'biuld'"
    ]
    assert (project / "results/params.ok").read_bytes() == before
