"""`python -m bench --quick` completes and writes every section; no timing is asserted, only shape and sanity."""

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import ROOT, project_env

SECTIONS = [
    "machine",
    "mask_overhead",
    "stage_overhead",
    "noop",
    "incremental",
    "parallel",
    "memory",
    "roofline",
    "portable_kernels",
    "imports",
]
STATS = ["median", "min", "max", "q1", "q3", "n"]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    command = [sys.executable, "-m", "bench", "--quick", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=project_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mask overhead" in done.stdout and "portable / native kernels" in done.stdout  # the table is printed
    return json.loads(out.read_text())


def numbers(node: object, path: str = "") -> list[tuple[str, float]]:
    """Every numeric leaf of the JSON with its dotted path (booleans are not numbers here)."""
    if isinstance(node, dict):
        return [pair for key, value in node.items() for pair in numbers(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [pair for index, value in enumerate(node) for pair in numbers(value, f"{path}.{index}")]
    if isinstance(node, int | float) and not isinstance(node, bool):
        return [(path, float(node))]
    return []


def stats_blocks(node: object) -> list[dict]:
    """Every median/spread summary in the JSON."""
    if isinstance(node, dict):
        own = [node] if set(STATS) <= set(node) else []
        return own + [block for value in node.values() for block in stats_blocks(value)]
    if isinstance(node, list):
        return [block for value in node for block in stats_blocks(value)]
    return []


@pytest.mark.slow
def test_every_section_is_written(results: dict) -> None:
    assert results["mode"] == "quick"
    assert [s for s in SECTIONS if s not in results] == []
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["torch_threads"] >= 1
    assert machine["torch"] and machine["python"].startswith("3.")


@pytest.mark.slow
def test_numbers_are_finite_and_summaries_ordered(results: dict) -> None:
    assert [path for path, value in numbers(results) if not math.isfinite(value)] == []
    blocks = stats_blocks(results)
    assert len(blocks) > 10
    for block in blocks:
        assert 0 < block["min"] <= block["q1"] <= block["median"] <= block["q3"] <= block["max"], block
        assert block["n"] >= 1


@pytest.mark.slow
def test_ratios_are_positive(results: dict) -> None:
    cases = results["mask_overhead"]["cases"]
    assert [c["model"] for c in cases][:2] == ["mlp", "mlp"] and len(cases) == 3
    assert all(c["ratio"]["median"] > 0 for c in cases)
    assert results["roofline"]["ratio"]["median"] > 0
    assert results["stage_overhead"]["wall_over_compute"] > 0
    assert results["incremental"]["ratio_to_full"] > 0
    assert results["memory"]["peak_rss_mib"] > 0


@pytest.mark.slow
def test_breakdown_adds_up_to_the_wall(results: dict) -> None:
    stage = results["stage_overhead"]
    assert sum(stage["breakdown_seconds"].values()) == pytest.approx(stage["wall_seconds"], rel=1e-9)
    parts = stage["breakdown_seconds"]
    assert parts["training_stages"] > 0 and parts["process_start_and_imports"] > 0 and parts["dvc_bookkeeping"] > 0
    assert stage["compute_seconds"] > 0, "the runs-one-at-a-time repro's training seconds"
    assert stage["wall_over_compute"] == pytest.approx(stage["wall_seconds"] / stage["compute_seconds"])


@pytest.mark.slow
def test_make_run_is_measured_under_the_warm_server_with_the_same_outputs(results: dict) -> None:
    stage = results["stage_overhead"]
    warm = stage["make_run"]
    assert warm["same_outputs_as_dvc_repro"] and warm["stages_run"] == stage["stages_run"]
    assert warm["peak_stage_process_rss_mib"] < 150, "stage processes handed their work to the server"
    assert warm["wall_over_compute"] == pytest.approx(warm["wall_seconds"] / stage["compute_seconds"])


@pytest.mark.slow
def test_reruns_are_counted(results: dict) -> None:
    assert results["noop"]["stages_run"] == 0
    incremental = results["incremental"]
    assert 0 < incremental["stages_rerun"] < incremental["stages_total"]
    assert any(name.startswith("retrain@ft") for name in incremental["rerun"])


@pytest.mark.slow
def test_parallel_is_measured(results: dict) -> None:
    parallel = results["parallel"]
    assert parallel["status"] == "measured"
    assert parallel["speedup"] > 0 and parallel["stages"] > 0
    flow = parallel["flow_bench"]["flow"]
    assert len(flow["timeline"]) == flow["stages"], "every stage task's span, as Prefect's server recorded it"
    assert all(0 <= start <= end for start, end in flow["timeline"].values())
    cpu = flow["cpu_s"]
    assert cpu["stages_and_dvc"] > 0 and cpu["total"] >= cpu["stages_and_dvc"] - 0.5, "CPU parts of the machine's"
    # A flow cannot keep more cores busy than there are: the bound is never below the speed-up.
    assert parallel["speedup"] <= parallel["speedup_bound"] * 1.02


@pytest.mark.slow
def test_portable_kernels_ran_on_each_side_what_it_says(results: dict) -> None:
    """The portable worker ran the stages' pins with oneDNN off, the native one neither; both with
    the stages' thread count."""
    from stages.shared.kernels import CAPABILITY, PINS

    section = results["portable_kernels"]
    assert [case["model"] for case in section["cases"]] == ["mlp", "resnet20"]
    for case in section["cases"]:
        native, portable = case["kernels"]["native"], case["kernels"]["portable"]
        assert portable["cpu_capability"] == CAPABILITY and portable["environment"] == PINS
        assert portable["mkldnn_enabled"] is False and native["mkldnn_enabled"] is True
        assert set(native["environment"].values()) == {None}
        assert native["torch_threads"] == portable["torch_threads"] == (section["threads"] or native["torch_threads"])
        assert case["ratio"]["median"] > 0 and case["ratio"]["n"] == 3
