# Set-up is part of every target: `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.refinedepth-installed
DEMO_OUT ?= demo-out

.PHONY: setup test lint demo bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when the project's metadata changes; an existing .venv is reused.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/python -m pytest -q

demo: setup
	$(VENV)/bin/refinedepth demo --out $(DEMO_OUT)

bench: setup
	$(VENV)/bin/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
