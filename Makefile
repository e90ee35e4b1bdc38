# The two README commands: `make demo` (main job) and `make test` (test suite).
# Each does its own set-up through scripts/bootstrap.sh.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-test demo test lint bench clean

# What the demo needs: iproute2, the venv with torch and the orchestrator extra.
setup:
	bash scripts/bootstrap.sh

# What the test suite needs besides: the dev extra and the services it runs (Docker, LXD, sshd...).
setup-test:
	bash scripts/bootstrap.sh --test

demo: setup
	$(VENV)/bin/pamdi demo

test: setup-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
