"""`python -m bench.gpu` runs its figures on the CPU too (CI has no GPU): every section written,
ratios positive, two identical runs compared."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, project_env

pytestmark = pytest.mark.slow


def test_the_gpu_bench_runs_on_the_cpu_and_writes_every_figure(tmp_path):
    out = tmp_path / "gpu.json"
    command = [sys.executable, "-m", "bench.gpu", "--device", "cpu", "--quick", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=project_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["machine"]["device"] == "cpu"
    assert [(case["model"], case["precision"]) for case in results["loop"]] == [
        ("resnet20", "fp32"),
        ("resnet20", "bf16"),
    ]
    for case in results["loop"]:
        assert case["ratio"]["median"] > 0 and case["cifar10_epoch_seconds"]["median"] > 0
    assert results["masked_step"]["ratio"]["median"] > 0
    for check in results["determinism"]:
        assert len(check["digests"]) == 2 and check["identical"] == (check["digests"][0] == check["digests"][1])
    assert results["determinism"][0]["identical"], "fp32 on the CPU is bit-identical run to run"
    assert "samples/s" in done.stdout


def test_no_gpu_is_one_line(tmp_path):
    command = [sys.executable, "-m", "bench.gpu", "--out", str(tmp_path / "gpu.json")]
    done = subprocess.run(
        command, cwd=ROOT, env=project_env() | {"CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: python -m bench.gpu: no CUDA device here; --device cpu runs it on the CPU"
    assert not (tmp_path / "gpu.json").exists()
