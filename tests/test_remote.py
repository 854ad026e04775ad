"""Results through a DVC remote, the round trip a team uses: real dvc, real git, the tiny config.

Project A is reproduced once per module; it commits dvc.lock, the git-tracked results and a
default remote (a local directory) set up by the README's own commands, then pushes its outputs
and run-cache. Every test works in its own fresh `git clone` of A, the way a teammate would, and
leaves A and its remote as it found them (a test that damages the remote damages a copy).
"""

import hashlib
import re
import shlex
import shutil
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
README_REMOTE = "/mnt/team/rewind-dvc"  # the remote URL in the README's setup commands
CHECKPOINT = "runs/dense/checkpoints/seed-0/epoch-000.safetensors"  # a file inside a directory output
DATASET = "data/prepared/dataset.safetensors"  # a single-file output
LISTING = "runs/dense/checkpoints"  # a directory output: its file list is an object too (<md5>.dir)


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def output_digests(path: Path) -> dict[str, str]:
    """sha256 of every file present under every output dvc.lock names, by path relative to `path`."""
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    digests = {}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            target = path / out["path"]
            if target.is_dir():
                files = sorted(p for p in target.rglob("*") if p.is_file())
            else:
                files = [target] if target.exists() else []
            for file in files:
                digests[str(file.relative_to(path))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def clone(origin: Path, dest: Path, storage: Path | None = None) -> Path:
    """A `git clone` of `origin`; with `storage`, its default remote points there (`--local`)."""
    run(["git", "clone", "-q", str(origin), str(dest)], origin.parent)
    if storage is not None:
        dvc("remote", "modify", "--local", "shared", "url", str(storage), cwd=dest)
    return dest


def readme_remote_setup() -> list[list[str]]:
    """The `dvc remote` commands of the README's remote setup, in order."""
    section = (ROOT / "README.md").read_text().split("### Sharing results through a DVC remote", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.startswith("dvc remote ")]


def remote_object(storage: Path, file: Path) -> Path:
    """Where a DVC 3 remote keeps `file`'s content: files/md5/<2 hex digits>/<the other 30>."""
    digest = hashlib.md5(file.read_bytes()).hexdigest()
    return storage / "files" / "md5" / digest[:2] / digest[2:]


def listing_object(storage: Path, project: Path, directory: str) -> Path:
    """Where a DVC 3 remote keeps the file list of `directory`, an output dvc.lock names."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    md5 = next(
        out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", []) if out["path"] == directory
    )
    return storage / "files" / "md5" / md5[:2] / md5[2:]


def flip_a_byte(path: Path, offset: int | None = None) -> None:
    """One bit of `path`'s byte at `offset` (the middle one by default) flipped, its mode
    (read-only, as DVC left it) kept."""
    mode = path.stat().st_mode
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 1
    path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(mode)


def damaged_remote(origin: Path, target: str, dest: Path) -> Path:
    """A copy of `origin`'s remote with one byte flipped in the object holding `target`: a file's
    content, or a directory's file list (where the flip renames seed-0/epoch-000 to epoch-001,
    so the list still parses, and names one file twice)."""
    storage = Path(shutil.copytree(origin.parent / "storage", dest))
    if (origin / target).is_dir():
        listing = listing_object(storage, origin, target)
        flip_a_byte(listing, listing.read_bytes().index(b"seed-0/epoch-000.") + len("seed-0/epoch-00"))
    else:
        flip_a_byte(remote_object(storage, origin / target))
    return storage


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
    """Project A: reproduced, results and the README's remote setup committed, outputs and run-cache pushed."""
    root = tmp_path_factory.mktemp("remote")
    path = copy_of(reproduced[0], root / "A")
    setup = readme_remote_setup()
    assert setup[0][:4] == ["dvc", "remote", "add", "-d"]
    for command in setup:
        dvc(*(str(root / "storage") if word == README_REMOTE else word for word in command[1:]), cwd=path)
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
    dvc("remote", "modify", "--local", "second", "verify", "true", cwd=puller)
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


# A damaged remote. DVC trusts a remote's files by their names: without `verify`, a file whose
# content no longer matches its hash is copied into the cache and the workspace, and `dvc status`
# calls it up to date. The README's setup turns `verify` on, so DVC rehashes every download.


def test_dvc_pull_checks_out_no_damaged_file(origin, tmp_path):
    storage = damaged_remote(origin, CHECKPOINT, tmp_path / "storage")
    b = clone(origin, tmp_path / "B", storage)
    pull = dvc("pull", cwd=b, check=False)
    assert pull.returncode != 0 and "Traceback" not in pull.stderr
    # DVC's message names the output it could not check out, not the file or the remote.
    assert "Checkout failed for following targets:\nruns/dense/checkpoints\n" in pull.stderr
    pulled = output_digests(b)
    assert CHECKPOINT not in pulled and not (b / "runs/dense/checkpoints").exists()
    assert pulled.items() <= output_digests(origin).items(), "every file that arrived is intact"
    assert "not in cache:       runs/dense/checkpoints" in dvc("status", cwd=b).stdout


@pytest.mark.parametrize(
    ("damaged", "named"),
    [
        pytest.param(DATASET, f"{DATASET} (damaged: its content does not match its hash)", id="file"),
        pytest.param(CHECKPOINT, f"{CHECKPOINT} (damaged: its content does not match its hash)", id="file-in-dir"),
        # `verify` drops the damaged list, but `dvc pull` then reads it from the remote unverified
        # and checks out a directory without epoch-000 (exit 0); `make pull` refuses it.
        pytest.param(LISTING, f"{LISTING} (damaged: its file list does not match its hash)", id="dir-listing"),
    ],
)
def test_make_pull_names_a_damaged_remote_file_and_checks_out_nothing(origin, tmp_path, damaged, named):
    storage = damaged_remote(origin, damaged, tmp_path / "storage")
    b = clone(origin, tmp_path / "B", storage)
    before = output_digests(b)  # the outputs git tracks
    line = one_line_failure(make("pull", b), "nothing checked out")
    assert line == f"make pull: DVC remote 'shared' ({storage}) has no intact copy of {named}; nothing checked out"
    assert output_digests(b) == before, "not even the intact outputs: the workspace is as it was"
    assert run(["git", "status", "--porcelain"], b).stdout == ""


def test_make_pull_keeps_the_outputs_there_when_a_newer_one_is_damaged(origin, tmp_path):
    storage = Path(shutil.copytree(origin.parent / "storage", tmp_path / "storage"))
    me = clone(origin, tmp_path / "me", storage)
    dvc("pull", cwd=me)
    before = output_digests(me)
    # A teammate commits and pushes a new version of the dense checkpoints; its file on the
    # remote gets damaged.
    teammate = clone(origin, tmp_path / "teammate", storage)
    dvc("pull", "prepare", "train", cwd=teammate)
    with open(teammate / CHECKPOINT, "ab") as checkpoint:
        checkpoint.write(b"\0")
    dvc("commit", "-f", "train", cwd=teammate)
    run(["git", "commit", "-qam", "newer dense checkpoints"], teammate)
    dvc("push", cwd=teammate)
    flip_a_byte(remote_object(storage, teammate / CHECKPOINT))
    run(["git", "pull", "-q", str(teammate), "main"], me)
    one_line_failure(make("pull", me), f"no intact copy of {CHECKPOINT} (damaged: ", "nothing checked out")
    assert output_digests(me) == before, "the previous checkpoints stay"
    # Plain `dvc pull` deletes them, having nothing intact to put in their place.
    assert dvc("pull", cwd=me, check=False).returncode != 0
    assert not (me / "runs/dense/checkpoints").exists()


def test_make_pull_refuses_a_remote_that_does_not_verify(origin, tmp_path):
    e = clone(origin, tmp_path / "E")
    dvc("remote", "modify", "--local", "shared", "verify", "false", cwd=e)
    fix = "dvc remote modify shared verify true"
    one_line_failure(make("pull", e), "make pull: DVC remote 'shared' does not verify downloads", fix)
    assert not (e / "runs").exists()


@pytest.mark.parametrize(
    "way",
    [
        pytest.param(["repro", "--pull"], id="readme"),
        # A cluster worker's job: dvc.lock deleted, one stage, upstream from the run-cache.
        pytest.param(["repro", "--pull", "retrain@ft-round0"], id="worker"),
    ],
)
def test_repro_pull_recomputes_a_stage_whose_remote_file_is_damaged(origin, tmp_path, way):
    storage = damaged_remote(origin, CHECKPOINT, tmp_path / "storage")
    c = clone(origin, tmp_path / "C", storage)
    if "retrain@ft-round0" in way:
        (c / "dvc.lock").unlink()
    output = dvc(*way, cwd=c).stdout
    assert "train" in ran(output) and "Stage 'train' is cached" not in output
    assert ran(output) <= {"train"} | UNCACHED, "every other stage still comes from the remote"
    dense = {path: digest for path, digest in output_digests(origin).items() if path.startswith("runs/dense/")}
    assert dense.items() <= output_digests(c).items(), "the dense run recomputed, bit for bit"
