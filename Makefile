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

.PHONY: setup run test lint browser

setup: $(VENV)/.installed

# Byte-compiled at install (no --no-compile): where PYTHONDONTWRITEBYTECODE is set, Python never
# caches what it compiles, and every stage would compile torch again (1 s a stage).
$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: setup
	dvc repro
	@echo; cat reports/report.md

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

# Results through a DVC remote: `dvc remote add -d <name> <url>` once (README), then push/pull.
# Both stop with one line when no default remote is set, or when a local remote cannot be
# reached ($(1): the check of a local path; $(2): what failed). DVC's own messages for these
# are several lines, or (pull) a list of every output.
.PHONY: push pull
remote_check = @name=$$(dvc config core.remote); \
	if [ -z "$$name" ]; then echo "make $@: no default DVC remote; add one with: dvc remote add -d <name> <url>" >&2; exit 1; fi; \
	url=$$(dvc config "remote.$$name.url"); \
	case "$$url" in *://*) ;; *) $(1) || { \
		echo "make $@: DVC remote '$$name' unreachable: $(2); fix it with: dvc remote modify $$name url <url>" >&2; exit 1; };; esac

# Upload every DVC output and the run-cache to the default remote.
push: setup
	$(call remote_check,mkdir -p "$$url" 2>/dev/null,cannot create $$url)
	dvc push --run-cache

# Download the outputs dvc.lock names from the default remote.
pull: setup
	$(call remote_check,test -d "$$url",$$url does not exist)
	dvc pull

# Several machines (README: Running on many machines): a worker for the shared Prefect server's
# `rewind-cluster` pool, in this clone, one stage at a time (PREFECT_API_URL names the server).
.PHONY: worker
worker: setup
	$(PYTHON) -m pipeline.cluster worker
