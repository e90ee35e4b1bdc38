# The two README commands: `make demo` (main job) and `make test` (test suite).
# Each does its own set-up through scripts/bootstrap.sh.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench clean

setup:
	bash scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/pamdi demo

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
