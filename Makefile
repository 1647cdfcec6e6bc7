# Two commands on a fresh machine: `make run` and `make test`. Both create .venv from the
# committed lock file (exact versions and hashes), so installs today and in a month match.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
# dvc.yaml commands call `python`: make it the project interpreter.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
# Tests use both cores unless told otherwise (PYTEST_WORKERS=0 runs them in one process).
PYTEST_WORKERS ?= 2

# `make mlflow-server`: a shared tracking server on PostgreSQL (the embedded SQLite store stays the default);
# point the pipeline at it with MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT)
MLFLOW_BACKEND_URI ?= postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow
MLFLOW_ARTIFACTS ?= $(CURDIR)/mlartifacts
MLFLOW_PORT ?= 5000
# `make serve`: the registered model a CRM-side service would call (default: the purchase champion)
MODEL_URI ?= models:/contact-priority-purchase@champion
PORT ?= 5001

.PHONY: run test venv lock lint docs clean help bank-marketing coil2000 serve mlflow-server notebooks lab plots

help:
	@echo "make run   - install pinned dependencies into .venv and run the DVC pipeline (dvc repro)"
	@echo "make test  - install if needed and run the whole test suite"
	@echo "make notebooks - execute notebooks/ against the outputs; executed copies in data/notebooks/"
	@echo "make lab   - open notebooks/ in JupyterLab (this venv's kernel)"
	@echo "make plots - the DVC plots as one page that opens offline (dvc_plots/index.html); CHECK=1 checks it in headless Chromium"
	@echo "make mlflow-server - MLflow tracking server on PostgreSQL (MLFLOW_BACKEND_URI=postgresql+psycopg://...)"
	@echo "make serve - serve a registered model over HTTP (MODEL_URI=models:/contact-priority-purchase@champion PORT=5001)"
	@echo "make lock  - recompile requirements.lock from pyproject.toml (maintainers)"
	@echo "make lint  - ruff and mypy"
	@echo "make docs  - regenerate docs derived from code (data contract)"
	@echo "make bank-marketing / make coil2000 - the public benchmarks through the pipeline's stages (docs/benchmarks.md)"

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	DVC=$(BIN)/dvc sh pipelines/repro.sh
	@echo
	@$(BIN)/python -m pipelines.summary
	@echo "Outputs:    data/ (see data/README.md)"
	@echo "MLflow UI:  $(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI)  then open http://127.0.0.1:5000"

test: venv
	$(BIN)/python -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

notebooks: venv
	$(BIN)/python -m pipelines.notebooks

lab: venv
	$(BIN)/jupyter lab notebooks/

plots: venv
	$(BIN)/python -m pipelines.plots_offline $(if $(CHECK),--check)

mlflow-server: venv
	$(BIN)/mlflow server --backend-store-uri "$(MLFLOW_BACKEND_URI)" --artifacts-destination "$(MLFLOW_ARTIFACTS)" \
		--host 127.0.0.1 --port $(MLFLOW_PORT)

serve: venv
	$(BIN)/mlflow models serve --model-uri "$(MODEL_URI)" --env-manager local --host 127.0.0.1 --port $(PORT)

lint: venv
	$(BIN)/ruff check features models pipelines tests benchmarks deploy
	$(BIN)/mypy features models pipelines

bank-marketing: venv
	$(BIN)/python -m pipelines.run_source benchmarks/sources/bank_marketing.yaml

coil2000: venv
	$(BIN)/python -m pipelines.run_source benchmarks/sources/coil2000.yaml

docs: venv
	$(BIN)/python -m pipelines.docs

lock: venv
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache
