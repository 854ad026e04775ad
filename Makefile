# Two entry points: `make run` (the whole comparison) and `make test` (the test suite).
# Both create .venv on first use from pyproject.toml's pinned dependencies.
VENV := .venv
PYTHON := $(VENV)/bin/python
# Stage commands in dvc.yaml call `python`: make it this venv's, and keep telemetry off (the
# same switches as pipeline.QUIET_ENV, which every process the flow, bench and tests start gets).
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup run test lint browser exps

setup: $(VENV)/.installed

# Byte-compiled at install (no --no-compile): where PYTHONDONTWRITEBYTECODE is set, Python never
# caches what it compiles, and every stage would compile torch again (1 s a stage).
$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# `dvc repro` under a warm stage server: torch is imported once for the whole run, not once per stage
# (stages/shared/warm.py); the same DVC, the same outputs.
run: setup
	$(PYTHON) -m stages.shared.warm_server dvc repro
	@echo; cat reports/report.md

# The experiments table in a terminal: what differs between experiments, the verdict first, then the
# params; without the dependency hashes (a column each) and per-round accuracies (README: Experiments).
EXPS_DROP := .*/|(exports|plugins|rewind|runs)$$|Created|.*\.accuracy\.round|.*\.safe_sparsity
exps: setup
	dvc exp show --no-pager --only-changed --drop '$(EXPS_DROP)'

lint: setup
	ruff check .
	ruff format --check .

test: lint browser
	pytest

# The browser tests (tests/plots/test_template.py: `dvc plots show`'s page; tests/pipeline/test_serve.py:
# the report artifact in Prefect's UI) drive Debian's chromium through chromedriver. Installed once
# (as root; skipped when both are there); apt's lists are refreshed only when the packages are not
# found in them.
APT_BROWSER := apt-get install -y --no-install-recommends chromium chromium-driver
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "make browser: chromium and chromedriver missing; as root run: $(APT_BROWSER)" >&2; exit 1; fi; \
	$(APT_BROWSER) || { apt-get update && $(APT_BROWSER); }

# Prefect (pipeline/): run the flow once; serve the scheduled deployment. Benchmarks (bench/):
# every figure (`python -m bench --quick`: a smoke run), or the flow against `dvc repro` alone.
.PHONY: flow prefect-up bench bench-flow

flow: setup
	$(PYTHON) -m pipeline

PREFECT_PORT ?= 4200
prefect-up: setup
	$(PYTHON) -m pipeline.serve --port $(PREFECT_PORT)

bench: setup
	$(PYTHON) -m bench

bench-flow: setup
	$(PYTHON) -m bench.flow

# Results through a DVC remote: `dvc remote add -d <name> <url>` and `dvc remote modify <name>
# verify true` once (README), then push/pull. Both stop with one line when no default remote is
# set, or when a local remote cannot be reached ($(1): the check of a local path; $(2): what
# failed; $(3): a further check). DVC's own messages for these are several lines, or (pull) a
# list of every output.
.PHONY: push pull
remote_check = @config=$$(dvc config --list) || exit 1; \
	setting() { printf '%s\n' "$$config" | sed -n "s|^$$1=||p" | tail -n 1; }; \
	name=$$(setting core.remote); \
	if [ -z "$$name" ]; then echo "make $@: no default DVC remote; add one with: dvc remote add -d <name> <url>" >&2; exit 1; fi; \
	url=$$(setting "remote.$$name.url"); \
	case "$$url" in *://*) ;; *) $(1) || { \
		echo "make $@: DVC remote '$$name' unreachable: $(2); fix it with: dvc remote modify $$name url <url>" >&2; exit 1; };; esac; \
	$(3)

# Upload every DVC output and the run-cache to the default remote.
push: setup
	$(call remote_check,mkdir -p "$$url" 2>/dev/null,cannot create $$url)
	dvc push --run-cache

# Without `verify`, DVC copies a remote file into the cache and the workspace unchecked: one
# flipped byte there is checked out, and `dvc status` calls it up to date.
verify_check = if [ "$$(setting "remote.$$name.verify" | tr A-Z a-z)" != true ]; then \
	echo "make $@: DVC remote '$$name' does not verify downloads, so a damaged file there would be checked out unnoticed; turn it on with: dvc remote modify $$name verify true" >&2; exit 1; fi
# What `dvc fetch` did not bring intact, as one phrase per file (empty when nothing): the outputs
# dvc.lock names that `dvc status` finds "not in cache", and in them the files `dvc status --cloud`
# finds "deleted" (on the remote, dropped by `verify`) or "missing" (on neither). An output with no
# such file lost its file list: its `.dir` object, dropped by `verify` (yet `dvc checkout` would
# read that from the remote unverified and check out what it lists).
define NOT_FETCHED
import json, subprocess, sys
def status(*args):
    done = subprocess.run(["dvc", "status", "--json", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"make pull: {' '.join(['dvc status', *args])} failed after dvc fetch: {done.stderr.strip()}")
    return json.loads(done.stdout)
outs = [entry.get("changed outs", {}) for entries in status().values() for entry in entries if isinstance(entry, dict)]
lacking = sorted({path for changed in outs for path, state in changed.items() if state == "not in cache"})
files = status("--cloud") if lacking else {}
why = {"deleted": "damaged: its content does not match its hash", "missing": "missing"}
def phrases(out):
    inside = sorted(path for path in files if files[path] in why and (path == out or path.startswith(out + "/")))
    named = [f"{path} ({why[files[path]]})" for path in inside]
    return named or [f"{out} (damaged: its file list does not match its hash)"]
print(", ".join(phrase for out in lacking for phrase in phrases(out)))
endef

# Download the outputs dvc.lock names from the default remote, every file rehashed (`verify`), and
# check them out only when all arrived intact: `dvc pull` would check out the rest and delete an
# output it cannot replace; here the workspace stays as it was, and one line names the files.
pull: export NOT_FETCHED_PY = $(NOT_FETCHED)
pull: setup
	$(call remote_check,test -d "$$url",$$url does not exist,$(verify_check))
	dvc fetch
	@lacking=$$($(PYTHON) -c "$$NOT_FETCHED_PY") || exit 1; [ -z "$$lacking" ] || { name=$$(dvc config core.remote); \
		echo "make pull: DVC remote '$$name' ($$(dvc config "remote.$$name.url")) has no intact copy of $$lacking; nothing checked out" >&2; exit 1; }
	dvc checkout

# Several machines (README: Running on many machines): a worker for the shared Prefect server's
# `rewind-cluster` pool, in this clone, one stage at a time (PREFECT_API_URL names the server).
.PHONY: worker
worker: setup
	$(PYTHON) -m pipeline.cluster worker
