# ATP's front door. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TOOLS := .tools
BUF_VERSION := 1.75.0
PROTO_FILES := $(shell find protos -name '*.proto' | sort)

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 11))" || { echo "ATP needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

include deploy/deploy.mk

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install ATP with its pinned dependencies

.PHONY: protos
protos: $(VENV)/.installed ## Generate the gRPC stubs from protos/ into libs/common
	$(PY) -m grpc_tools.protoc -I protos --python_out=libs/common --pyi_out=libs/common \
		--grpc_python_out=libs/common $(PROTO_FILES)
	@for d in $$(find libs/common/atp -type d); do touch $$d/__init__.py; done

.PHONY: protos-check
protos-check: protos ## Fail when the committed stubs differ from what the protos generate
	@git diff --exit-code --stat -- libs/common/atp || { echo "generated stubs drifted from protos/: run make protos and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- libs/common/atp)" || { git status --short -- libs/common/atp; echo "untracked generated stubs: run make protos and commit"; exit 1; }

$(TOOLS)/node_modules/.bin/buf:
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

.PHONY: buf-lint
buf-lint: $(TOOLS)/node_modules/.bin/buf ## Lint the protos with buf
	$(TOOLS)/node_modules/.bin/buf lint

.PHONY: lint
lint: $(VENV)/.installed ## ruff (lint and format check) over the tree, mypy over the packages
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs/common/atp_common services/gateway/atp_gateway services/router/atp_router \
		services/observer/atp_observer services/adapters/atp_adapters tools/atp_tools

.PHONY: run
run: $(VENV)/.installed ## Start the whole suite on the default ports with embedded defaults (Ctrl-C drains)
	$(PY) -m atp_tools.suite

.PHONY: browser-deps
browser-deps: ## Install Debian's chromium and chromium-driver for the console's browser tests, when missing
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed"; \
	else \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

.PHONY: test
test: $(VENV)/.installed ## All three tiers in one run, with branch coverage (fails under the floor in pyproject)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m pytest --cov --cov-report=term tests

# An environment that sets PYTHONDONTWRITEBYTECODE would make every run compile the tree and rewrite the
# test modules' asserts again; the inner loop keeps the (git-ignored) __pycache__ instead.
.PHONY: test-unit
test-unit: $(VENV)/.installed ## Only tests/unit: in-process, fakes only, a fifth of the property examples (the inner loop)
	PYTHONDONTWRITEBYTECODE= ATP_PROPERTY_EXAMPLES_SHARE=0.2 $(PY) -m pytest tests/unit

.PHONY: test-integration
test-integration: $(VENV)/.installed ## Only tests/integration: real PostgreSQL and Redis, several services in-process
	$(PY) -m pytest tests/integration

.PHONY: test-e2e
test-e2e: $(VENV)/.installed ## Only tests/e2e: real service processes, browsers, schemathesis, deploy artefacts
	$(PY) -m pytest tests/e2e

.PHONY: clean
clean: ## Remove the virtualenv, tools and local state
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .coverage .coverage.*
include bench/bench.mk
