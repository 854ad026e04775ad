"""Every stage, run for real on the reproduced tiny project, imports no costly module it does not
use (the import budget of bench/imports.py); ONNX's exporter only where params ask for ONNX."""

import re
from pathlib import Path

import pytest
import yaml

from bench import imports
from tests.conftest import ROOT, copy_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(reproduced, tmp_path_factory) -> Path:
    return copy_of(reproduced[0], tmp_path_factory.mktemp("imports") / "project")


def test_every_stage_module_dvc_runs_is_measured(project):
    modules = set(re.findall(r"python -m (stages\.\w+)", (ROOT / "dvc.yaml").read_text()))
    assert set(imports.stage_commands(project)) == modules


def test_no_stage_imports_a_costly_module_it_does_not_use(project):
    measured = imports.measure(project, repetitions=1)
    assert {module: result["unwanted"] for module, result in measured.items()} == {module: [] for module in measured}
    for module, result in measured.items():
        assert 0 < result["torch_seconds"]["median"] < result["import_seconds"]["median"], module


def test_the_detector_sees_what_a_stage_really_imports(project):
    """The report draws figures (matplotlib) and training keeps curves (dvclive): both are seen, so
    an empty `unwanted` above means absent, not unseen."""
    assert "matplotlib.pyplot" in imports.import_times(project, "stages.report", [])
    assert "dvclive" in imports.import_times(project, "stages.train", [])


def test_the_onnx_exporter_is_imported_only_when_onnx_is_asked_for(project):
    export = ["--strategy", "ft", "--round", "0"]
    assert not imports.packages_among(imports.ONNX, set(imports.import_times(project, "stages.export", export)))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["export"]["onnx"] = ["ft-round0"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    asked = set(imports.import_times(project, "stages.export", export))
    assert imports.packages_among(imports.ONNX, asked) >= {"torch.onnx", "onnxscript", "onnx"}
    assert (project / "exports/ft/round-0/seed-0.onnx").exists()
