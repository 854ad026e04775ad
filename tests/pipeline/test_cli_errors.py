"""`python -m pipeline` on bad input: one `error:` line, exit status 2, no traceback, nothing written, no Prefect.

Each run is a real subprocess under `python -X importtime`, whose list of imported modules shows
that a bad option was refused before Prefect was imported (so before any server could start).
"""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, project_env, tiny_params

IMPORT_TIME = "import time:"


def run_cli(project: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str], set[str]]:
    """`python -m pipeline --project project *args` with no PREFECT_API_URL: (result, stderr less imports, modules)."""
    environment = {**project_env(), **env}
    environment.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pipeline", "--project", str(project), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stderr.splitlines()
    modules = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith(IMPORT_TIME)}
    return result, [line for line in lines if not line.startswith(IMPORT_TIME)], modules


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding just params.yaml: every check here happens before the flow reads more."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return folder


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--set", "seeds=[1"], "error: --set 'seeds=[1': not valid YAML: expected ',' or ']', but got '<stream end>'"),
        (["--set", "train.lr=-1"], "error: overrides: params.yaml: train.lr: "),
        (["--set", "train.lr"], "error: --set 'train.lr': expected KEY=VALUE"),
        (["--set", "=0.1"], "error: --set '=0.1': expected KEY=VALUE"),
        (["--set", "train.lrr=0.1"], "error: overrides: unknown params.yaml key 'train.lrr' (known here: epochs, "),
        (["--set", "train.lr.x=1"], "error: overrides: unknown params.yaml key 'train.lr.x' (train.lr is a value)"),
        (["--strategy", "ft", "--strategy", "magic"], "error: strategies: unknown strategy 'magic'; defined in "),
    ],
)
def test_bad_input_is_one_line_before_prefect(project, args, line):
    before = snapshot(project)
    result, stderr, modules = run_cli(project, *args)
    assert result.returncode == 2, result.stderr
    assert len(stderr) == 1 and stderr[0].startswith(line), stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert not {module for module in modules if module.split(".")[0] == "prefect"}, "Prefect was imported"
    assert snapshot(project) == before


def test_a_temporary_server_that_does_not_start_is_one_line(project, tmp_path):
    before = snapshot(project)
    result, stderr, _ = run_cli(
        project,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_ENABLED="true",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="0",  # as a start that outlasts the timeout
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in stderr if line.startswith("error:")]
    assert errors == [line for line in stderr if line.strip()], stderr
    assert len(errors) == 1 and errors[0].startswith("error: Prefect: the temporary server did not start ("), errors
    assert "server.ephemeral.startup_timeout_seconds in prefect.toml (now 0 s)" in errors[0]
    assert "Traceback" not in result.stderr
    assert snapshot(project) == before


def test_prefect_toml_gives_the_temporary_server_time_to_start():
    """Prefect reads the key (a misspelt one would be ignored) and it allows a start on busy cores."""
    environment = project_env()
    environment.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    code = "from prefect.settings import get_current_settings as s; print(s().server.ephemeral.startup_timeout_seconds)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    assert int(result.stdout) >= 60
