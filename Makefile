# One entry per job. `make run` and `make test` are the two set-up commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test chaos lint fmt typecheck unit train bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,drift]'
	rm -f $(VENV)/.installed-*
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

test: lint typecheck
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

clean:
	rm -rf $(VENV) models .mypy_cache .ruff_cache
