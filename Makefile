# lmtransfer: `make repro` sets up and runs the whole pipeline; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test test-fast bench tune ui server push pull realism clean-data

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## The whole pipeline on the built-in phantom data (re-runs only what changed).
repro: setup
	$(BIN)/dvc repro

## Every test, including the slower end-to-end ones (what CI runs).
test: setup
	$(BIN)/python -m pytest -q

## Unit tests only (seconds).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

## Speed benchmarks, printing ratios measured side by side.
bench: setup
	$(BIN)/python benchmarks/run.py

## Optuna search of patch size, depth, width, lr, weight decay; writes the best into params.yaml.
## Resumes after an interruption; `make tune WORKERS=2` runs parallel workers on the same study.
WORKERS ?= 1
tune: setup
	$(BIN)/dvc repro patches
	$(BIN)/lmtransfer tune --workers $(WORKERS)

## MLflow UI over the project's store, on http://127.0.0.1:5000
ui: setup
	@echo "open http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the runs view, not the GenAI overview)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root mlruns/artifacts --host 127.0.0.1 --port 5000

## A tracking server for a team: `MLFLOW_TRACKING_URI=http://HOST:PORT` makes every stage log there.
## SQLite by default; BACKEND=postgresql://user@host/db for a shared database. Artifacts are proxied
## (stored under ARTIFACTS by the server), so clients need no access to its disk.
BACKEND ?= sqlite:///mlruns/server.db
ARTIFACTS ?= mlruns/server-artifacts
HOST ?= 127.0.0.1
PORT ?= 5000
server: setup
	@echo "open http://$(HOST):$(PORT)/#/experiments?workflowType=machine_learning; clients: export MLFLOW_TRACKING_URI=http://$(HOST):$(PORT)"
	$(BIN)/mlflow server --backend-store-uri $(BACKEND) --artifacts-destination $(ARTIFACTS) \
		--host $(HOST) --port $(PORT)

## Data and models to / from the DVC remote (default: ../lmtransfer-dvc-remote beside the project;
## `dvc remote modify --local local url PATH`, or add an S3 / SSH remote, to change it).
push: setup
	$(BIN)/dvc push
pull: setup
	$(BIN)/dvc pull

## Phantom vs the real CT in ../shared/data (HU per tissue, noise, histograms).
realism: setup
	$(BIN)/lmtransfer realism --out reports/realism
