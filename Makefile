# spot_pipelines — every command installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install demo lint test test-fast test-future bench validate clean reliability

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo needs only the package and its [demo] extra (moto's server as the local AWS emulator).
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

## The end-to-end demo on embedded defaults: SQLite, local AWS emulator, bundled data, then the UI (PORT=3100: its port).
demo: $(DEMO_STAMP)
	$(BIN)/spot-pipelines demo $(if $(PORT),--port $(PORT))

## ruff: the lint rules and the formatting (pyproject.toml [tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## The whole test suite, on SQLite and on the local PostgreSQL.
test: $(STAMP)
	bash scripts/ensure-services.sh
	bash scripts/ensure-browser.sh
	$(BIN)/python -m pytest -q

## Fast subset: no Postgres, no browser.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not postgres and not browser"

## The whole suite 400 days ahead (tests/clock_shift/: pytest and its Python subprocesses travel together).
test-future: $(STAMP)
	SPOT_PIPELINES_CLOCK_SHIFT_DAYS=$${SPOT_PIPELINES_CLOCK_SHIFT_DAYS:-400} $(MAKE) test

## The fault-injection and leak-scan suite alone (fuzzers at 3x: 3,000-6,000 examples each), ending with the reliability matrix.
reliability: $(STAMP)
	bash scripts/ensure-services.sh
	SPOT_FAULTS_FUZZ_SCALE=$${SPOT_FAULTS_FUZZ_SCALE:-3} $(BIN)/python -m pytest -q -m faults tests/faults

## Every benchmark against its baseline in one run; writes bench-results.json.
bench: $(STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/python -m benchmarks.run

validate: $(STAMP)
	mkdir -p $(DAGSTER_HOME) && cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	env -u ENCRYPTION_KEY $(BIN)/dagster definitions validate -m spot_pipelines.definitions
	env -u ENCRYPTION_KEY $(BIN)/dg check defs
	env -u ENCRYPTION_KEY $(BIN)/dg list defs

clean:
	rm -rf $(VENV) .dagster_home bench-results.json artifacts
