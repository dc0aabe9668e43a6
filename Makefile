# distproc: `make cluster-up` runs the main job, `make test` runs every test.
# Every target depends on the virtualenv .venv with the project installed (editable) and only
# its own dependencies; a target that needs an extra ([test], [bench]) installs it once.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One stamp file per install: the project itself (base), then one per extra. Files, not the
# .venv directory itself, whose mtime moves whenever an entry is added to it.
STAMPS := $(VENV)/.installed
FILE   ?= cluster.yaml
PYTEST_ARGS ?=
# more arguments for the orchestrate command behind a target: make job ARGS='--kind io'
ARGS   ?=
# how many test machines `make testbed-up` makes (orchestrate testbed up --hosts)
HOSTS  ?= 3
# how long `make soak` starts jobs for (bench/soak.py --minutes)
MINUTES ?= 10

.PHONY: cluster-up cluster-down status logs job check chaos validate graph test test-unit e2e \
        bench bench-quick soak lint readme testbed-up testbed-down dashboard vendor-js

# A failed install removes .venv, so that the next call tries again instead of trusting it.
$(STAMPS)/base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip && $(BIN)/pip install --quiet -e . \
		|| { rm -rf $(VENV); exit 1; }
	mkdir -p $(STAMPS) && touch $@

# An extra, installed once; redone after the base (when pyproject.toml changed).
$(STAMPS)/%: $(STAMPS)/base
	$(BIN)/pip install --quiet -e '.[$*]' || { rm -f $@; exit 1; }
	touch $@

cluster-up: $(STAMPS)/base
	$(BIN)/orchestrate up -f $(FILE) $(ARGS)

cluster-down: $(STAMPS)/base
	$(BIN)/orchestrate down -f $(FILE) $(ARGS)

status: $(STAMPS)/base
	$(BIN)/orchestrate status -f $(FILE) $(ARGS)

logs: $(STAMPS)/base
	$(BIN)/orchestrate logs --file $(FILE) $(ARGS)

job: $(STAMPS)/base
	$(BIN)/orchestrate job -f $(FILE) $(ARGS)

check: $(STAMPS)/base
	$(BIN)/orchestrate check -f $(FILE) $(ARGS)

# a fault while a job runs, and the verdict: make chaos ARGS=kill-worker (none: the file's list)
chaos: $(STAMPS)/base
	$(BIN)/orchestrate chaos -f $(FILE) $(ARGS)

validate: $(STAMPS)/base
	$(BIN)/orchestrate validate -f $(FILE) $(ARGS)

graph: $(STAMPS)/base
	$(BIN)/orchestrate graph -f $(FILE) $(ARGS)

# The test bed: HOSTS machines with sshd and their own dockerd, and .cluster/testbed/hosts.yaml.
testbed-up: $(STAMPS)/base
	$(BIN)/orchestrate testbed up --hosts $(HOSTS) $(ARGS)

testbed-down: $(STAMPS)/base
	$(BIN)/orchestrate testbed down $(ARGS)

# the live dashboard of the running cluster: make dashboard ARGS=--open
dashboard: $(STAMPS)/dashboard
	$(BIN)/orchestrate dashboard -f $(FILE) $(ARGS)

# Re-fetch the dashboard's vendored JS (pinned in its vendor.json) with npm, checking hashes;
# `make vendor-js ARGS=--check` only checks the committed files. Standard library and npm.
vendor-js:
	$(PYTHON) tools/vendor_js.py $(ARGS)

test: $(STAMPS)/test
	$(BIN)/pytest $(PYTEST_ARGS) tests

test-unit: $(STAMPS)/test
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

e2e: $(STAMPS)/test
	$(BIN)/pytest $(PYTEST_ARGS) -m e2e tests/e2e

bench: $(STAMPS)/bench
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(STAMPS)/bench
	$(BIN)/python -m bench.quick $(ARGS)

# back-to-back jobs with random faults for MINUTES, one verdict (bench/soak.py; exit 3: lost)
soak: $(STAMPS)/base
	$(BIN)/python -m bench.soak --minutes $(MINUTES) $(ARGS)

lint: $(STAMPS)/test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The README's YAML example is cluster.yaml itself: copy it in (tests/unit/test_readme.py
# fails while they differ). Standard library only: no .venv needed.
readme:
	$(PYTHON) tools/sync_readme.py
