# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates .venv with the machine's python3 and installs deepaudit into it once
# (again only when pyproject.toml changes), then runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepaudit-installed
DEMO_OUT ?= demo-output

export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test test-fast lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,review,browser,personalize,server,scale]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepaudit demo --out $(DEMO_OUT)

# Two or more pytest-xdist workers (one per core, at most 4); the tests of one module, or of one
# server fixture (Ray cluster, PostgreSQL), share a worker (tests/conftest.py).
XDIST := -n logical --maxprocesses 4 --dist loadgroup

test: $(STAMP) lint
	$(BIN)/python -m pytest $(XDIST) --durations=25

# The tests not marked slow (under a minute on 2 cores): for the edit-test loop; CI runs `test`.
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest $(XDIST) -m "not slow"

lint: $(STAMP)
	$(BIN)/python tools/check_layers.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark (benchmarks/__main__.py), the Ray scale ones in their quick form (~5 minutes).
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info .pytest_cache .ruff_cache .hypothesis
