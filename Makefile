# One-command entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two install sets, each with its own stamp so that neither reinstalls needlessly: the
# runtime (`make run`: the service and shim extras) and the dev set (`make test`), which
# holds the runtime too and so marks both done.
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed

.PHONY: install run test test-containers lint typecheck bench soak clean browser-deps lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[service,shim]'
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

install: $(STAMP)

## run: the control plane on an embedded nats-server with JetStream (Ctrl-C stops it);
## installs only what running needs
run: $(RUN_STAMP)
	$(BIN)/unibus serve

## test: lint, types, then the whole suite against real nats-server processes, in six
## pytest-xdist workers on two cores (most of a test's time is waiting on nats-server, a
## lifetime or a subprocess), handed out one test at a time; a test that shares a module
## fixture goes with its file (conftest.py); `make test PYTEST_ARGS=` runs it in one process
PYTEST_ARGS ?= -n 6 --dist loadgroup
test: $(STAMP) lint
	$(BIN)/pytest $(PYTEST_ARGS)

## test-containers: the image, the container backend and deploy/compose.yaml on a real
## Docker engine, one started for the run where none is running (tests/run-containers.sh)
test-containers: $(STAMP)
	tests/run-containers.sh

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench
	$(BIN)/mypy

## browser-deps: the test page's npm packages (NATS JS client, nkeys, esbuild); chromium comes from apt
browser-deps:
	npm ci --prefix tests/browser --no-audit --no-fund

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/pytest -m soak -o addopts=''

## lock: what the image installs, pinned with hashes: deploy/requirements.lock (the service
## and shim extras) and deploy/build-requirements.lock (the build backend, for this project
## and the sdists among them); pip-tools runs from a throwaway venv. Run it with the image's
## Python minor version (3.11) after changing a dependency in pyproject.toml.
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
	 && $(PYTHON) -m venv "$$tmp" && "$$tmp/bin/pip" install --quiet pip-tools \
	 && export CUSTOM_COMPILE_COMMAND="make lock" \
	 && "$$tmp/bin/pip-compile" $(LOCK_FLAGS) --extra service --extra shim -o deploy/requirements.lock pyproject.toml \
	 && "$$tmp/bin/pip-compile" $(LOCK_FLAGS) --build-deps-for wheel --only-build-deps \
	      -o deploy/build-requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
