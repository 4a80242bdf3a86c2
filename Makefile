# flowscope: `make demo` sets everything up and runs the demo; `make test` runs the whole suite.
# Needs only Python 3.11+ and make: the database is the embedded PostgreSQL unless
# FLOWSCOPE_DATABASE_URL (demo) or FLOWSCOPE_TEST_DATABASE_URL (tests) names a server.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo lab test lint bench clean

# the developer toolchain (tests, lint, notebooks, every extra)
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.demo-installed $(VENV)/.lab-installed

# only what the SDK needs (what `pip install flowscope` brings): enough for the demo
$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

# the SDK and JupyterLab with what the notebooks import (flowscope[notebooks])
$(VENV)/.lab-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks]"
	touch $@ $(VENV)/.demo-installed

setup: $(VENV)/.installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/flowscope demo

# open the walkthroughs in notebooks/ in JupyterLab (LAB_ARGS="--no-browser --ip 0.0.0.0" on a server)
lab: $(VENV)/.lab-installed
	$(VENV)/bin/jupyter lab notebooks/ $(LAB_ARGS)

test: setup
	$(PY) -m pytest tests sdk/flowscope --doctest-modules -p no:cacheprovider
	if ls notebooks/*.ipynb >/dev/null 2>&1; then $(PY) -m pytest --nbval --nbval-sanitize-with notebooks/sanitize.cfg notebooks -p no:cacheprovider; fi

lint: setup
	$(VENV)/bin/ruff check sdk tests migrations benchmarks
	$(VENV)/bin/ruff format --check sdk tests migrations benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
