# distproc: `make cluster-up` runs the main job, `make test` runs every test.
# Every target depends on .venv, which creates the virtualenv and installs the project.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FILE   ?= cluster.yaml
PYTEST_ARGS ?=

.PHONY: cluster-up cluster-down status logs test test-unit e2e bench bench-quick lint

# A failed install removes .venv, so that the next call tries again instead of trusting it.
$(VENV): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet -e '.[dev]' \
		|| { rm -rf $(VENV); exit 1; }
	touch $(VENV)

cluster-up: $(VENV)
	$(BIN)/orchestrate up -f $(FILE)

cluster-down: $(VENV)
	$(BIN)/orchestrate down -f $(FILE)

status: $(VENV)
	$(BIN)/orchestrate status -f $(FILE)

logs: $(VENV)
	$(BIN)/orchestrate logs --file $(FILE)

test: $(VENV)
	$(BIN)/pytest $(PYTEST_ARGS) tests

test-unit: $(VENV)
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

e2e: $(VENV)
	$(BIN)/pytest $(PYTEST_ARGS) -m e2e tests/e2e

bench: $(VENV)
	$(BIN)/python -m bench.run

bench-quick: $(VENV)
	$(BIN)/python -m bench.quick

lint: $(VENV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
