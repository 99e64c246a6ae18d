# One-command entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-containers lint typecheck bench soak clean browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## run: the control plane on an embedded nats-server with JetStream (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/unibus serve

## test: lint, types, then the whole suite against real nats-server processes
test: $(STAMP) lint
	$(BIN)/pytest

## test-containers: the image, the container backend and deploy/compose.yaml on a real
## Docker engine, one started for the run where none is running (tests/run-containers.sh)
test-containers: $(STAMP)
	tests/run-containers.sh

lint: $(STAMP)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service tests
	$(BIN)/mypy

## browser-deps: the test page's npm packages (NATS JS client, nkeys, esbuild); chromium comes from apt
browser-deps:
	npm ci --prefix tests/browser --no-audit --no-fund

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/pytest -m soak -o addopts=''

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
