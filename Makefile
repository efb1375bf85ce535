# Learnstream — every command a newcomer and CI need. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
BUF    := node_modules/.bin/buf
# Airflow gets its own environment: it and faust-streaming need different croniter
# versions. The project is installed there without its dependencies, plus what the
# DAG tasks import (ml/, scheduler/, learnstream/) and what the DAG tests need.
AF_VENV  := .venv-airflow
AF_PY    := $(AF_VENV)/bin/python
AF_STAMP := $(AF_VENV)/.setup-stamp
AIRFLOW_PACKAGES := apache-airflow numpy scipy torch mlflow-skinny sqlalchemy alembic \
	pyarrow pydantic pydantic-settings asyncpg confluent-kafka pytest pytest-asyncio
# MLflow's web UI is only in the full `mlflow` package, which pins an older pyarrow than
# the services use: it gets an environment of its own, at the same version as the
# mlflow-skinny client that writes the store.
MLF_VENV  := .venv-mlflow
MLF_STAMP := $(MLF_VENV)/.setup-stamp
MLFLOW_UI_PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: help setup setup-airflow setup-browser setup-compose setup-ops-tools monitoring proto lint test test-unit test-integration demo demo-reset services stop bench clean mlflow-ui

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml infra/constraints.txt package.json
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c infra/constraints.txt -e '.[dev,ref,ml]'
	# pyBKT (group ref-compiled): compiled C++ build; needs numpy visible while building.
	$(PY) -c 'import pyBKT.fit.E_step' 2>/dev/null || { \
		$(PY) -m pip install --quiet -c infra/constraints.txt setuptools && \
		$(PY) -m pip install --quiet --no-cache-dir --no-build-isolation --no-binary pybkt \
			--force-reinstall --no-deps -c infra/constraints.txt pybkt; }
	$(PY) -c 'import pyBKT.fit.E_step'
	npm install --no-audit --no-fund --silent
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install everything (idempotent)

$(AF_STAMP): pyproject.toml infra/constraints-airflow.txt
	test -x $(AF_PY) || $(PYTHON) -m venv $(AF_VENV)
	$(AF_PY) -m pip install --quiet --upgrade pip
	$(AF_PY) -m pip install --quiet -c infra/constraints-airflow.txt $(AIRFLOW_PACKAGES)
	$(AF_PY) -m pip install --quiet --no-deps -e .
	touch $(AF_STAMP)

setup-airflow: $(AF_STAMP) ## Create .venv-airflow (Airflow 3 + the project, no Faust) for dags/

$(MLF_STAMP): infra/constraints.txt
	test -x $(MLF_VENV)/bin/python || $(PYTHON) -m venv $(MLF_VENV)
	$(MLF_VENV)/bin/pip install --quiet "mlflow==$$(sed -n 's/^mlflow-skinny==//p' infra/constraints.txt)"
	touch $(MLF_STAMP)

mlflow-ui: $(STAMP) $(MLF_STAMP) ## MLflow's UI on the local store (runs, models, aliases): :5000
	$(MLF_VENV)/bin/mlflow server --host 127.0.0.1 --port $(MLFLOW_UI_PORT) \
		--backend-store-uri "$$($(PY) -c 'from ml.registry import tracking_uri; from learnstream.settings import get_settings; print(tracking_uri(get_settings()))')"

# The dashboard's browser test drives Debian's chromium with Playwright (never
# `playwright install`). Installs the package only when /usr/bin/chromium is missing.
setup-browser: ## Install Debian chromium for the dashboard browser test (idempotent)
	@test -x /usr/bin/chromium || { \
		SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }
	@/usr/bin/chromium --version 2>/dev/null | head -1

# The deployment tests render infra/compose/docker-compose.yml with Debian's
# docker-compose (`config` only: nothing is started, no Docker daemon is needed).
setup-compose: ## Install Debian docker-compose for the compose file's validation (idempotent)
	@command -v docker-compose >/dev/null || { \
		SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-compose; }
	@docker-compose version 2>/dev/null | head -1

# Prometheus (with promtool: rule tests, `make monitoring`) and Redis Sentinel (the
# failover test) from Debian. Installs only what is missing.
setup-ops-tools: ## Install Debian prometheus and redis-sentinel for tests and monitoring (idempotent)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && \
		command -v redis-sentinel >/dev/null && command -v redis-server >/dev/null || { \
		SUDO=$$(test "$$(id -u)" -eq 0 || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus redis-server redis-sentinel; }
	@promtool --version 2>&1 | head -1; redis-sentinel --version | head -1

proto: $(STAMP) ## Regenerate learnstream/events/v1 from proto/
	$(PY) -m infra.gen_proto

lint: $(STAMP) ## ruff, mypy, buf lint and buf breaking against the released schema
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	cd proto && ../$(BUF) lint && ../$(BUF) breaking --against released/v1.binpb

test: $(STAMP) $(AF_STAMP) setup-browser setup-compose setup-ops-tools ## Every test tier (unit, property, integration, e2e), DAGs too
	$(PY) -m pytest $(PYTEST_ARGS)
	# The DAG tests need Airflow, so they run in .venv-airflow (the run above skips them).
	$(AF_PY) -m pytest tests/unit/dags tests/integration/dags $(PYTEST_ARGS)

test-unit: $(STAMP) ## Only the fast tiers (unit, property)
	$(PY) -m pytest -m 'unit or property' $(PYTEST_ARGS)

services: $(STAMP) ## Start the broker, check PostgreSQL/Redis, migrate, create topics
	$(PY) -m infra.services up

demo: $(STAMP) ## The whole pipeline on real data: services, ingest, processors, api, replay
	$(PY) -m infra.demo

monitoring: $(STAMP) setup-ops-tools ## Prometheus on 127.0.0.1:9090 scraping the demo's services, with the alert rules
	$(PY) -m infra.monitoring

stop: $(STAMP) ## Stop everything `make demo`, `make services` or `make monitoring` started
	$(PY) -m infra.demo stop

demo-reset: $(STAMP) ## Stop the demo and forget its data (database, Redis keys, lake)
	$(PY) -m infra.demo reset

bench: $(STAMP) ## Run the benchmarks; figures are printed and written to bench/results/
	$(PY) -m bench

clean: ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) $(AF_VENV) $(MLF_VENV) node_modules .data .run .pytest_cache .mypy_cache .ruff_cache
