# Two entry points: `make run` (the whole comparison) and `make test` (the test suite).
# Both create .venv on first use from pyproject.toml's pinned dependencies.
VENV := .venv
PYTHON := $(VENV)/bin/python
# Stage commands in dvc.yaml call `python`: make it this venv's, and keep telemetry off.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup run test lint

setup: $(VENV)/.installed

# --no-compile: byte-compiling every installed module (prefect and dvc are large) costs about 25 s
# of the install; Python compiles the few modules the stages import on first use instead.
$(VENV)/.installed: pyproject.toml
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile -e '.[dev]'
	touch $@

run: setup
	dvc repro
	@echo; cat reports/report.md

lint: setup
	ruff check .
	ruff format --check .

test: lint
	pytest

# Prefect (pipeline/): run the flow once; serve the scheduled deployment; benchmark the flow.
.PHONY: flow prefect-up bench-flow

flow: setup
	$(PYTHON) -m pipeline

prefect-up: setup
	$(PYTHON) -m pipeline.serve

bench-flow: setup
	$(PYTHON) -m pipeline.bench
