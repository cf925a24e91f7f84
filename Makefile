# One entry per job. `make run` and `make test` are the two set-up commands. Both install exactly
# what uv.lock pins (`uv sync --frozen`); `make upgrade` is the only way a version moves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The uv that installs the lock: the one on PATH when it is 0.13 or newer (older ones may not read
# this lock's format), else this pinned one, brought in by pip.
UV_VERSION := 0.13.10
UV_HOME := .uv
ifndef UV
UV := $(shell v=$$(uv --version 2>/dev/null | cut -d' ' -f2); \
	if [ -n "$$v" ] && printf '0.13.0\n%s\n' "$$v" | sort -V -C; then command -v uv; \
	else echo $(UV_HOME)/bin/uv; fi)
endif
EXTRAS := --extra dev --extra drift
STAMP := $(VENV)/.synced-$(shell cat pyproject.toml uv.lock 2>/dev/null | cksum | cut -d' ' -f1)
# uv uses this Python, never one it would download.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test chaos lint fmt typecheck unit train bench soak clean install lock-check \
	upgrade check-python

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)' \
	  2>/dev/null || { echo "error: Turnout needs Python 3.11 to 3.13; '$(PYTHON)' is \
	$$($(PYTHON) --version 2>&1 || echo missing). Run make with PYTHON=python3.11 (or 3.12, 3.13)." >&2; \
	  exit 1; }

$(UV_HOME)/bin/uv: | check-python
	@echo "uv not found: installing uv==$(UV_VERSION) into $(UV_HOME)/ with pip"
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check --retries 1 --timeout 20 \
	  --target $(UV_HOME) uv==$(UV_VERSION) || { echo "error: uv is missing and pip could not \
	install uv==$(UV_VERSION) (is the package index reachable?). Install uv yourself (it only \
	has to be on PATH), or make the index reachable, then run make again." >&2; exit 1; }

# Fails at once, before anything is installed, when uv.lock is missing or disagrees with
# pyproject.toml: the lock is never re-resolved behind your back.
lock-check: check-python $(UV)
	@test -f uv.lock || { echo "error: uv.lock is missing. It pins what the two commands \
	install; restore it from git (git checkout uv.lock) or create it with make upgrade." >&2; \
	  exit 1; }
	@$(UV) lock --check --offline --quiet 2>/dev/null || { echo "error: uv.lock is out of date with \
	pyproject.toml (a dependency was added, removed or its range changed). Run make upgrade \
	(or uv lock to change only what the edit needs) and commit uv.lock." >&2; exit 1; }

$(STAMP): pyproject.toml $(wildcard uv.lock) | lock-check
	$(UV) sync --frozen $(EXTRAS)
	rm -f $(VENV)/.synced-* $(VENV)/.installed-*
	touch $@

install: $(STAMP)

train: $(STAMP)
	$(BIN)/turnout train --all --if-missing

run: train
	$(BIN)/turnout up --traffic 5

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

test: lock-check lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The adversarial campaign of issue 14 as tests: real processes, bounded load, one figure each.
chaos: $(STAMP)
	$(BIN)/python -m pytest tests/chaos -m chaos -s $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: train
	$(BIN)/python -m benchmarks.worker
	$(BIN)/python -m benchmarks.upstream_clients
	$(BIN)/python -m benchmarks.gateway_overhead
	$(BIN)/python -m benchmarks.recording
	$(BIN)/python -m benchmarks.shadow
	$(BIN)/python -m benchmarks.hashing
	$(BIN)/python -m benchmarks.bandit_regret
	$(BIN)/python -m benchmarks.bandit_replay
	$(BIN)/python -m benchmarks.rollout_sim
	$(BIN)/python -m benchmarks.capture
	$(BIN)/python -m benchmarks.capture_format
	$(BIN)/python -m benchmarks.drift_time
	$(BIN)/python -m benchmarks.drift_sim
	$(BIN)/python -m benchmarks.model_quality
	$(BIN)/python -m benchmarks.protocols
	$(BIN)/python -m benchmarks.capacity
	$(BIN)/python -m benchmarks.failover
	$(BIN)/python -m benchmarks.soak

# Ten minutes of load with reloads and Redis blips: RSS drift and the events identity.
soak: train
	$(BIN)/python -m benchmarks.soak

# Re-lock to the newest versions pyproject.toml allows, install them, and test them.
upgrade: check-python $(UV)
	$(UV) lock --upgrade
	$(MAKE) test

clean:
	rm -rf $(VENV) $(UV_HOME) models .mypy_cache .ruff_cache
