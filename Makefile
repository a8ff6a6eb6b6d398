# lmtransfer: `make repro` sets up and runs the whole pipeline; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test test-fast bench tune ui realism clean-data

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
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db \
		--default-artifact-root mlruns/artifacts --host 127.0.0.1 --port 5000

## Phantom vs the real CT in ../shared/data (HU per tissue, noise, histograms).
realism: setup
	$(BIN)/lmtransfer realism --out reports/realism
