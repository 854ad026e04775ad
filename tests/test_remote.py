"""Results through a DVC remote, the round trip a team uses: real dvc, real git, the tiny config.

Project A is reproduced once per module; it commits dvc.lock, the git-tracked results and a
default remote (a local directory), then pushes its outputs and run-cache. Every test works in
its own fresh `git clone` of A, the way a teammate would, and leaves A as it found it.
"""

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, VENV_BIN, copy_of, dvc, run

pytestmark = pytest.mark.slow

VENV = Path(VENV_BIN).parent
UNREACHABLE = "/proc/nonexistent/remote"  # /proc refuses new directories, even to root
# validate, evaluate and report write git-tracked, `persist` outputs: DVC keeps no run-cache
# entry for them, so without a dvc.lock they run again; every other stage comes from the cache.
UNCACHED = {"validate", "evaluate", "report"}
MAKE_FAILED = re.compile(r"make(\[\d+\])?: \*\*\*")  # make's own line; make[1] when run under `make test`


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def output_digests(path: Path) -> dict[str, str]:
    """sha256 of every file under every output dvc.lock names, by path relative to `path`."""
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    digests = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            target = path / out["path"]
            files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else [target]
            for file in files:
                digests[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def clone(origin: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", str(origin), str(dest)], origin.parent)
    return dest


def make(target: str, cwd: Path):
    """The project's Makefile target in `cwd`, with this venv (already installed: `-o` skips setup)."""
    cmd = ["make", "-f", str(ROOT / "Makefile"), f"VENV={VENV}", "-o", f"{VENV}/.installed", target]
    return run(cmd, cwd, check=False)


def one_line_failure(result, *words: str) -> str:
    """The one line a failed make target printed (make's own `make: ***` line aside)."""
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line and not MAKE_FAILED.match(line)]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def origin(reproduced, tmp_path_factory) -> Path:
    """Project A: reproduced, results and a default remote committed, outputs and run-cache pushed."""
    root = tmp_path_factory.mktemp("remote")
    path = copy_of(reproduced[0], root / "A")
    dvc("remote", "add", "-d", "shared", str(root / "storage"), cwd=path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "results, shared remote"], path)
    pushed = dvc("push", "--run-cache", cwd=path)
    assert "files pushed" in pushed.stdout
    assert run(["git", "status", "--porcelain"], path).stdout == ""
    return path


def test_pull_in_a_fresh_clone_restores_every_output_and_repro_runs_nothing(origin, tmp_path):
    b = clone(origin, tmp_path / "B")
    assert not (b / "runs").exists() and not (b / "data/prepared").exists()
    dvc("pull", cwd=b)
    assert output_digests(b) == output_digests(origin)
    assert "up to date" in dvc("status", cwd=b).stdout
    assert "in sync" in dvc("status", "--cloud", cwd=b).stdout
    output = dvc("repro", cwd=b).stdout
    assert "Running stage" not in output and ran(output) == set()
    assert run(["git", "status", "--porcelain"], b).stdout == ""


def test_repro_pull_in_a_fresh_clone_runs_nothing(origin, tmp_path):
    c = clone(origin, tmp_path / "C")
    output = dvc("repro", "--pull", cwd=c).stdout
    assert "Running stage" not in output
    stages = set(yaml.safe_load((c / "dvc.lock").read_text())["stages"])
    pulled = {line.split("'")[1] for line in lines_starting(output, "Pulling data for stage: '")}
    assert pulled == stages - UNCACHED, "every cached stage's outputs come from the remote"
    assert output_digests(c) == output_digests(origin)
    assert "up to date" in dvc("status", cwd=c).stdout
    assert run(["git", "status", "--porcelain"], c).stdout == ""


def test_without_dvc_lock_repro_pull_takes_every_cached_stage_from_the_pushed_run_cache(origin, tmp_path):
    c = clone(origin, tmp_path / "C")
    (c / "dvc.lock").unlink()
    output = dvc("repro", "--pull", cwd=c).stdout
    stages = set(yaml.safe_load((origin / "dvc.lock").read_text())["stages"])
    restored = {line.split("'")[1] for line in output.splitlines() if "is cached - skipping run" in line}
    assert restored == stages - UNCACHED
    assert ran(output) == UNCACHED
    assert run(["git", "status", "--porcelain"], c).stdout == "", "same dvc.lock, results and reports"


def test_make_push_and_pull_round_trip_through_a_new_remote(origin, tmp_path):
    storage = tmp_path / "storage2"
    # A teammate with the run-cache (fetched from the shared remote) pushes to a new, empty remote...
    pusher = clone(origin, tmp_path / "pusher")
    dvc("fetch", "--run-cache", cwd=pusher)
    dvc("remote", "add", "--local", "-d", "second", str(storage), cwd=pusher)
    pushed = make("push", pusher)
    assert pushed.returncode == 0, pushed.stderr
    assert "dvc push --run-cache" in pushed.stdout and "files pushed" in pushed.stdout
    assert files_under(storage / "runs") == files_under(origin / ".dvc/cache/runs"), "the whole run-cache"
    # ...and another fresh clone pulls from it.
    puller = clone(origin, tmp_path / "puller")
    dvc("remote", "add", "--local", "-d", "second", str(storage), cwd=puller)
    pulled = make("pull", puller)
    assert pulled.returncode == 0, pulled.stderr
    assert output_digests(puller) == output_digests(origin)
    assert "up to date" in dvc("status", cwd=puller).stdout


def test_no_remote_dvc_push_and_pull_fail_without_traceback(origin, tmp_path):
    e = clone(origin, tmp_path / "E")
    dvc("remote", "remove", "shared", cwd=e)
    push = dvc("push", "--run-cache", cwd=e, check=False)
    assert push.returncode != 0 and "Traceback" not in push.stderr
    # DVC's own message: one ERROR line naming the problem, the command to fix it on the next.
    errors = lines_starting(push.stderr, "ERROR:")
    assert len(errors) == 1 and "no remote specified" in errors[0]
    assert "dvc remote add -d <remote name> <remote url>" in push.stderr
    # `dvc pull` says "No remote provided and no default remote set." first, then lists every
    # output it could not check out (26 lines here), while stdout says "Everything is up to date.":
    # unclear, hence the Makefile's check before it.
    pull = dvc("pull", cwd=e, check=False)
    assert pull.returncode != 0 and "Traceback" not in pull.stderr
    assert pull.stderr.splitlines()[0] == "No remote provided and no default remote set."
    assert len(lines_starting(pull.stderr, "ERROR:")) == 1


def test_no_remote_make_push_and_pull_fail_in_one_line(origin, tmp_path):
    e = clone(origin, tmp_path / "E")
    dvc("remote", "remove", "shared", cwd=e)
    for target in ("push", "pull"):
        line = one_line_failure(make(target, e), "no default DVC remote", "dvc remote add -d <name> <url>")
        assert line.startswith(f"make {target}: ")
    assert not (e / "runs").exists()


def test_unreachable_remote_dvc_push_and_pull_fail_without_traceback(origin, tmp_path):
    f = clone(origin, tmp_path / "F")
    dvc("fetch", cwd=f)  # a cache to push
    dvc("remote", "modify", "shared", "url", UNREACHABLE, cwd=f)
    push = dvc("push", "--run-cache", cwd=f, check=False)
    assert push.returncode != 0 and "Traceback" not in push.stderr
    # DVC calls it "unexpected error" but names the path it could not create:
    # ERROR: unexpected error - [Errno 2] No such file or directory: '/proc/nonexistent'
    errors = lines_starting(push.stderr, "ERROR:")
    assert len(errors) == 1 and "/proc/nonexistent" in errors[0]
    # For a local remote DVC cannot tell a missing directory from an empty remote: `dvc pull`
    # warns of missing cache files and fails checking out, without naming the remote.
    g = clone(origin, tmp_path / "G")
    dvc("remote", "modify", "shared", "url", UNREACHABLE, cwd=g)
    pull = dvc("pull", cwd=g, check=False)
    assert pull.returncode != 0 and "Traceback" not in pull.stderr
    assert "Missing cache files" in pull.stderr
    assert len(lines_starting(pull.stderr, "ERROR:")) == 1


def test_unreachable_remote_make_push_and_pull_fail_in_one_line(origin, tmp_path):
    f = clone(origin, tmp_path / "F")
    dvc("fetch", cwd=f)
    dvc("remote", "modify", "shared", "url", UNREACHABLE, cwd=f)
    fix = "dvc remote modify shared url <url>"
    one_line_failure(make("push", f), "make push: DVC remote 'shared' unreachable", UNREACHABLE, fix)
    one_line_failure(make("pull", f), "make pull: DVC remote 'shared' unreachable", UNREACHABLE, fix)
    assert not (f / "runs").exists()
