"""The export stage under real dvc on a tiny filter-pruned project: every format round-trips,
the stage reruns alone, and bad input is one line that writes nothing."""

import json
import sys
from pathlib import Path

import pytest
import torch

from rewind.checkpoint import load_tensors
from rewind.export import load_compact, load_slim
from rewind.models import build_model
from tests.conftest import dvc, make_project, run, tiny_params

pytestmark = pytest.mark.slow

STAGE, ROUND = "export@lrr-round0", Path("exports/lrr/round-0")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tiny project pruned by whole filters (the MLP's neurons), exported for one round."""
    params = tiny_params(**{"prune.granularity": "filter", "prune.scope": "layer", "compare": ["lrr"]})
    path = make_project(tmp_path_factory.mktemp("export") / "project", params)
    dvc("repro", STAGE, cwd=path)
    return path


def masked_model(path: Path, seed: int) -> torch.nn.Module:
    model = build_model("mlp", (1, 8, 8), 10, seed=0).eval()
    model.load_state_dict(load_tensors(path / f"runs/lrr/round-0/models/seed-{seed}.safetensors")[0])
    return model


def test_every_format_gives_back_the_masked_model(project):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for seed in (0, 1):
        model = masked_model(project, seed)
        with torch.no_grad():
            expected = model(x)
        state, masks = load_compact(project / ROUND / f"seed-{seed}.compact.safetensors")
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert masks.keys() == load_tensors(project / f"runs/lrr/round-0/masks/seed-{seed}.safetensors")[0].keys()
        slimmed, kept = load_slim(project / ROUND / f"seed-{seed}.slim.safetensors")
        assert len(kept["1"]["outputs"]) == 150 and len(kept["3"]["inputs"]) == 150, "half of 300 neurons left"
        proto = onnx.load(project / ROUND / f"seed-{seed}.onnx")
        (from_onnx,) = ReferenceEvaluator(proto).run(None, {proto.graph.input[0].name: x.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(slimmed(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(from_onnx), expected, rtol=0, atol=1e-5)


def test_sizes_are_counted_beside_the_dense_format_model(project):
    sizes = json.loads((project / ROUND / "sizes.json").read_text())
    assert set(sizes) == {"seed-0", "seed-1"}
    for seed, entry in sizes.items():
        assert entry["model_bytes"] == (project / f"runs/lrr/round-0/models/{seed}.safetensors").stat().st_size
        assert entry["compact_bytes"] == (project / ROUND / f"{seed}.compact.safetensors").stat().st_size
        assert entry["slim_params"] < entry["nonzero_params"] < entry["params"]
        assert entry["slim_bytes"] < entry["compact_bytes"] < entry["model_bytes"]


def test_the_stage_reruns_alone_with_identical_outputs(project):
    before = {p.name: p.read_bytes() for p in (project / ROUND).iterdir()}
    result = dvc("repro", "-f", "-s", "--no-run-cache", STAGE, cwd=project)
    output = result.stdout
    assert [line for line in output.splitlines() if line.startswith("Running stage")] == [f"Running stage '{STAGE}':"]
    assert "torchvision is not installed" not in output + result.stderr, "the exporter's noise is silenced"
    assert {p.name: p.read_bytes() for p in (project / ROUND).iterdir()} == before
    assert "up to date" in dvc("status", STAGE, cwd=project).stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--strategy", "lrr", "--round", "1"], "runs/lrr/round-1/models/seed-0.safetensors: file not found"),
        (["--strategy", "magic", "--round", "0"], "params.yaml: compare: strategy 'magic' is not compared"),
        (["--strategy", "lrr", "--round", "7"], "params.yaml: rounds: no round 7"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(project, arguments, message):
    before = sorted(str(p) for p in (project / "exports").rglob("*"))
    result = run([sys.executable, "-m", "stages.export", *arguments], project, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and errors[0] == result.stderr.strip().splitlines()[-1]
    assert sorted(str(p) for p in (project / "exports").rglob("*")) == before
