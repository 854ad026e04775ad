"""stages.shared.kernels: a stage gives the same bits whatever kernel settings the machine would
choose, because it pins its own before torch loads.

Another CPU is stood in for by kernel settings forced from outside (FORCED): each of them alone
changes the bits of a few training steps in plain torch, as another CPU's kernels would. The train
stage, run as a real process under the plain environment and under FORCED, must write the same
bytes. Should a pin be removed (or stop overriding the environment), that test fails.
"""

import functools
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.shared.kernels import CAPABILITY, PINS
from tests.conftest import ROOT, make_project, project_env, tiny_params

# Kernel settings unlike the pins, as another CPU's own choices would be.
FORCED = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
# Which model shows each setting's effect: oneDNN runs convolutions only.
SHOWN_BY = {"ATEN_CPU_CAPABILITY": "mlp", "MKL_CBWR": "mlp", "ONEDNN_MAX_CPU_ISA": "lenet5"}
# What oneDNN and MKL log to stdout for every call they run; neither changes results.
VERBOSE = {"ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1"}
MODELS = ["mlp", "lenet5"]
ONEDNN_CALL = re.compile(r"^onednn_verbose,.*primitive,exec", re.MULTILINE)
MKL_CNR = re.compile(r"^MKL_VERBOSE .* CNR:(\S+)", re.MULTILINE)

# A few SGD steps in a process that imports torch directly, not through `stages`: nothing pinned.
PLAIN_TORCH_STEPS = """
import hashlib, json, sys
import torch
import torch.nn.functional as F
from rewind.models import build_model

torch.set_num_threads(1)
generator = torch.Generator().manual_seed(0)
x = torch.randn(64, 1, 8, 8, generator=generator)
y = torch.randint(0, 10, (64,), generator=generator)
digests = {}
for name in sys.argv[1:]:
    model = build_model(name, (1, 8, 8), 10, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.numpy().tobytes())
    digests[name] = digest.hexdigest()
print("DIGESTS", json.dumps(digests))
"""


def environment(settings: dict[str, str]) -> dict[str, str]:
    """The tests' project environment with no kernel setting of its own, then `settings`. The pins
    are removed first: this test process may have set them in os.environ by importing `stages`."""
    env = project_env()
    for name in [*PINS, *FORCED, *VERBOSE]:
        env.pop(name, None)
    return env | settings


def run_in(cwd: Path, command: list[str], settings: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=environment(settings), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


@functools.cache
def plain_torch(settings: tuple[tuple[str, str], ...]) -> tuple[dict[str, str], str]:
    """Weight digests per model after the plain-torch steps under `settings`, and the stdout."""
    done = run_in(ROOT, [sys.executable, "-c", PLAIN_TORCH_STEPS, *MODELS], dict(settings))
    line = next(line for line in done.stdout.splitlines() if line.startswith("DIGESTS "))
    return json.loads(line.removeprefix("DIGESTS ")), done.stdout


def digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` (rewind points, models, masks, histories, curves) by digest."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def tiny_config(model: str) -> dict:
    """One seed, three epochs: seconds of training."""
    overrides = {"model.name": model, "seeds": [0], "train.epochs": 3, "train.milestones": [2]}
    return tiny_params(**overrides, **{"strategies.reinit.budget": 3})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A project with the dataset prepared (digits: the same for every model)."""
    project = make_project(tmp_path_factory.mktemp("kernels") / "prepared", tiny_config(MODELS[0]))
    run_in(project, [sys.executable, "-m", "stages.prepare"], {})
    return project


@pytest.fixture(scope="module", params=MODELS)
def trained(request, prepared) -> dict:
    """The dense outputs of the train stage under the plain environment and under FORCED (with the
    libraries' verbose logs on, to see what it ran), in two copies of one validated project."""
    model = request.param
    validated = shutil.copytree(prepared, prepared.parent / model, symlinks=True)
    (validated / "params.yaml").write_text(yaml.safe_dump(tiny_config(model), sort_keys=False))
    run_in(validated, [sys.executable, "-m", "stages.validate"], {})
    runs = {}
    for name, settings in {"plain": {}, "forced": FORCED | VERBOSE}.items():
        project = shutil.copytree(validated, prepared.parent / f"{model}-{name}", symlinks=True)
        done = run_in(project, [sys.executable, "-m", "stages.train"], settings)
        runs[name] = {"files": digests(project / "runs/dense"), "stdout": done.stdout}
    return {"model": model, **runs}


def test_train_stage_writes_the_same_bytes_under_other_kernel_settings(trained):
    plain, forced = trained["plain"]["files"], trained["forced"]["files"]
    assert sum("checkpoints/seed-0/epoch-" in name for name in plain) == 4  # epochs 0 … 3 of seed 0
    assert {"models/seed-0.safetensors", "masks/seed-0.safetensors", "history/seed-0.json"} <= set(plain)
    assert forced == plain


def test_train_stage_never_runs_onednn(trained):
    """oneDNN's kernels depend on the CPU model and its caches, which no setting fixes: the stage
    turns it off. Its verbose log lists every primitive it runs (plain torch: see below)."""
    assert ONEDNN_CALL.findall(trained["forced"]["stdout"]) == []


def test_onednn_verbose_shows_convolutions_in_plain_torch():
    """The check above could not see oneDNN if its log were off: plain torch's LeNet-5 steps log calls."""
    _, stdout = plain_torch(tuple((FORCED | VERBOSE).items()))
    assert ONEDNN_CALL.search(stdout)


@pytest.mark.parametrize("model", MODELS)
def test_forced_settings_change_the_bits_of_plain_torch(model):
    """The stand-in is meaningful: without the pins, FORCED gives other weights than the plain run."""
    plain, _ = plain_torch(())
    forced, _ = plain_torch(tuple(FORCED.items()))
    assert forced[model] != plain[model]


@pytest.mark.parametrize("setting", list(FORCED))
def test_each_forced_setting_alone_changes_the_bits_of_plain_torch(setting):
    """Each pin is needed: ATen's and MKL's choice change an MLP's weights, oneDNN's a conv net's."""
    model = SHOWN_BY[setting]
    plain, _ = plain_torch(())
    alone, _ = plain_torch(((setting, FORCED[setting]),))
    assert alone[model] != plain[model]


@pytest.mark.parametrize("settings", [{}, FORCED], ids=["plain", "forced"])
def test_a_stage_process_runs_the_pinned_capability(tmp_path, settings):
    probe = (
        "import json, os, sys, stages, torch; "
        "print(json.dumps([torch.backends.cpu.get_cpu_capability(), {n: os.environ.get(n) for n in sys.argv[1:]}]))"
    )
    done = run_in(tmp_path, [sys.executable, "-c", probe, *PINS], settings)
    capability, seen = json.loads(done.stdout.splitlines()[-1])
    assert capability == CAPABILITY == "AVX2"
    assert seen == PINS


def test_mkl_runs_the_pinned_branch(trained):
    """MKL's verbose log names the reproducibility branch of every call the stage made. (MKL
    honours branches other than COMPATIBLE on Intel CPUs only, and runs AUTO elsewhere.)"""
    branches = set(MKL_CNR.findall(trained["forced"]["stdout"]))
    assert branches == {PINS["MKL_CBWR"]}
