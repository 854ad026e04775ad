"""The export stage under real dvc on a tiny filter-pruned project: every format round-trips, ONNX
only where params ask, one round exports on its own, the stage reruns alone, and bad input is one
line that writes nothing."""

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

STAGE, ROUND, OTHER_ROUND = "export", Path("exports/lrr/round-0"), Path("exports/lrr/round-1")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tiny project pruned by whole filters (the MLP's neurons), both rounds exported, round 0
    to ONNX as well."""
    params = tiny_params(
        **{"prune.granularity": "filter", "prune.scope": "layer", "compare": ["lrr"], "export.onnx": ["lrr-round0"]}
    )
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


def test_onnx_only_for_the_rounds_params_name(project):
    assert sorted(p.name for p in (project / ROUND).glob("*.onnx")) == ["seed-0.onnx", "seed-1.onnx"]
    assert list((project / OTHER_ROUND).glob("*.onnx")) == []
    assert sorted(p.name for p in (project / OTHER_ROUND).glob("*.safetensors")) == [
        f"seed-{s}.{kind}.safetensors" for s in (0, 1) for kind in ("compact", "slim")
    ]


def test_one_round_exports_on_its_own_as_the_stage_does(project, tmp_path):
    before = {p.name: p.read_bytes() for p in (project / ROUND).iterdir()}
    run([sys.executable, "-m", "stages.export", "--strategy", "lrr", "--round", "0"], project)
    assert {p.name: p.read_bytes() for p in (project / ROUND).iterdir()} == before
    assert "up to date" in dvc("status", STAGE, cwd=project).stdout
    # asked no more, the round's ONNX files go when it is exported again
    params = project / "params.yaml"
    committed = params.read_text()
    params.write_text(committed.replace("- lrr-round0", "[]").replace("onnx:\n", "onnx: "))
    try:
        run([sys.executable, "-m", "stages.export", "--strategy", "lrr", "--round", "0"], project)
        kept = sorted(name for name in before if not name.endswith(".onnx"))
        assert sorted(p.name for p in (project / ROUND).iterdir()) == kept
    finally:
        params.write_text(committed)
        run([sys.executable, "-m", "stages.export", "--strategy", "lrr", "--round", "0"], project)
    assert {p.name: p.read_bytes() for p in (project / ROUND).iterdir()} == before


def test_the_stage_reruns_alone_with_identical_outputs(project):
    before = {str(p): p.read_bytes() for p in (project / "exports").rglob("*") if p.is_file()}
    result = dvc("repro", "-f", "-s", "--no-run-cache", STAGE, cwd=project)
    output = result.stdout
    assert [line for line in output.splitlines() if line.startswith("Running stage")] == [f"Running stage '{STAGE}':"]
    assert "torchvision is not installed" not in output + result.stderr, "the exporter's noise is silenced"
    assert {str(p): p.read_bytes() for p in (project / "exports").rglob("*") if p.is_file()} == before
    assert "up to date" in dvc("status", STAGE, cwd=project).stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--strategy", "lrr"], "runs/lrr/round-1/models/seed-1.safetensors: file not found"),
        (["--strategy", "lrr", "--round", "1"], "runs/lrr/round-1/models/seed-1.safetensors: file not found"),
        ([], "runs/lrr/round-1/models/seed-1.safetensors: file not found"),
        (["--strategy", "magic"], "params.yaml: compare: strategy 'magic' is not compared"),
        (["--strategy", "lrr", "--round", "7"], "params.yaml: rounds: no round 7"),
        (["--round", "0"], "--round: name the strategy it is a round of with --strategy"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(project, arguments, message, tmp_path):
    """A model file missing from round 1 (its seed 1): no round is written, round 0 included."""
    before = {str(p): p.read_bytes() for p in (project / "exports").rglob("*") if p.is_file()}
    missing = project / "runs/lrr/round-1/models/seed-1.safetensors"
    missing.rename(tmp_path / "moved")
    try:
        result = run([sys.executable, "-m", "stages.export", *arguments], project, check=False)
    finally:
        (tmp_path / "moved").rename(missing)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and errors[0] == result.stderr.strip().splitlines()[-1]
    assert {str(p): p.read_bytes() for p in (project / "exports").rglob("*") if p.is_file()} == before
