# Everyday commands. Every target runs through uv, from the lockfile; `make help` lists them.
.DEFAULT_GOAL := help
UV ?= uv

.PHONY: help install lint types imports test test-fast golden requirements ci

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

install: ## Create .venv from uv.lock (what CI installs)
	$(UV) sync --locked

lint: ## ruff (lint + format check), mypy and the import contracts
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports

types: ## mypy only
	$(UV) run mypy

imports: ## the dependency-direction contracts only (pyproject.toml [tool.importlinter])
	$(UV) run lint-imports

test: ## the whole suite, as CI runs it (the README's test command)
	$(UV) run pytest

test-fast: ## the fast lane: everything that starts no process or server
	$(UV) run pytest -m "not integration"

golden: ## regenerate the generated files the tests compare against (then review the diff)
	$(UV) run mlops workflows render --stack dev --out tests/golden/workflows/dev
	$(UV) run mlops workflows render --stack staging --out tests/golden/workflows/staging
	$(UV) run mlops workflows render --stack prod --out tests/golden/workflows/prod
	$(UV) run mlops bento requirements
	$(UV) run mlops monitoring render --out platform/monitoring
	$(UV) export --only-group mlflow-server --frozen --no-header --no-annotate -o images/mlflow/requirements.txt >/dev/null
	$(UV) export --only-group serving --frozen --no-header --no-annotate -o images/serving/requirements.txt >/dev/null

requirements: ## regenerate bentos/requirements.txt from uv.lock
	$(UV) run mlops bento requirements

ci: ## exactly what CI runs (.ci/run)
	bash .ci/run
