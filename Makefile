# Every target builds its own virtual environment first; nothing relies on what
# happens to be installed on the machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/var/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_UI_ENABLED ?= true
export DO_NOT_TRACK := 1

.PHONY: venv demo test test-postgres up bench bench-smoke clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/partnerflow demo

up: $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"
	$(BIN)/partnerflow up

# The suite on SQLite, spread over the machine's cores; the slow end-to-end tests (a whole stack
# started and killed) run in test-postgres.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(or $(PYTEST_WORKERS),auto)
test: $(STAMP)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# Every test, slow ones included, against PostgreSQL (the machine's server, a fresh database).
test-postgres: $(STAMP)
	PARTNERFLOW_DATABASE_URL=$${PARTNERFLOW_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test} \
	  $(PYTEST) $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in bench/[a-z]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Every benchmark at small sizes (what `make test` runs too): does each still run?
bench-smoke: $(STAMP)
	@for b in bench/[a-z]*.py; do echo "== $$b --smoke"; $(BIN)/python $$b --smoke || exit 1; done

clean:
	rm -rf $(VENV) var
