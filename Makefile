# Two entry points for a fresh machine (see README):
#   make demo   create/reuse .venv, install, run the main job on the built-in demo data
#   make test   create/reuse .venv, install, run the test suite
#   make lint   ruff's lint rules and formatting check (CI runs it before the tests)
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vaa-installed

.PHONY: demo test lint install clean-runs

install: $(STAMP)

# torch first, on its own: `pip install torch==2.13.0` takes the CPU build from
# local disk on the reference machine; a looser request could pull a CUDA build.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vaa demo

test: $(STAMP)
	$(PY) -m pytest

# ruff (configured in pyproject.toml): the linter, and the formatter's check
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean-runs:
	rm -rf runs
