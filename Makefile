# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bandit-demo

# the suite in TEST_WORKERS processes (pytest-xdist): much of it waits on servers,
# brokers and pollers, so two processes finish well before one on two cores; an idle
# process takes tests queued for the other (worksteal), so one slow test near the end
# does not leave the other core idle (588 s of pytest with the default "load", 516 s so)
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check bandit replay tests benchmarks
	$(BIN)/mypy bandit replay

clean:
	rm -rf $(VENV) var build *.egg-info
