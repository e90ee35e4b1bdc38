#!/usr/bin/env bash
# Wheels (in .gpuwhl/, not .whl/: that is the node image's cp311 wheelhouse) that scripts/gpu-check.sh needs on a GPU machine that reaches no package index (the lent
# accelerator machine: Python 3.12, its own CUDA build of torch, no pyzmq/pydantic). Run HERE, where
# pip reaches an index; it fills .gpuwhl/ (git-ignored) with the project's missing pure dependencies,
# no torch. Versions follow this checkout's .venv so both sides run the same wire and spec code.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "gpu-wheels: no .venv here: run scripts/bootstrap.sh first" >&2; exit 2; }
mkdir -p .gpuwhl
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
for pkg in pydantic pydantic_core annotated-types typing-inspection pyzmq; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpuwhl "$pkg==$(version "$pkg")"
done
ls -la .gpuwhl
