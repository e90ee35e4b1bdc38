#!/usr/bin/env bash
# GPU check (issue 16): run on a machine with CUDA, with the torch that machine already has (no
# pinned torch is installed: the accelerator machine ships a CUDA build and reaches no index).
# Missing pure-Python dependencies travel as wheels in .gpuwhl/ (scripts/gpu-wheels.sh makes them).
#
#   bash scripts/gpu-check.sh            # writes into $OUT (the device tool's) or results/gpu-check/
#
# Steps, each logged to gpu-check.log: torch and GPU; `pamdi models verify --device cuda` (blocks on
# the GPU against the CPU monolithic model, within 1e-4; GPT-2's top-k identical); GPU profiles of
# ResNet-50, GPT-2, ResNet-56 and tiny (CUDA-synchronised; copied to profiles/); the `cuda`-marked
# tests (tests/test_gpu.py: the same checks, GPU profiles, and a 3-agent loopback emulation with one
# GPU node under every policy, outputs equal to the monolithic model). Exit status: the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT/profiles"
LOG="$OUT/gpu-check.log"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if compgen -G ".gpuwhl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pamdi-site \
    .gpuwhl/*.whl || { echo "gpu-check: installing .gpuwhl/ failed" | tee -a "$LOG"; exit 2; }
  export PYTHONPATH="/tmp/pamdi-site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
pamdi() { "$PY" -c 'from orchestrator.cli import main; main()' "$@"; }
status=0
step() {  # step NAME CMD...: run, log, remember the first failure
  local name=$1; shift
  echo "== $name: $*" | tee -a "$LOG"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc in $((SECONDS - t0)) s" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || [ "$status" -ne 0 ] || status=$rc
}
step torch "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__,
  "cuda", torch.version.cuda, "available", torch.cuda.is_available());
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'
step imports "$PY" -c 'import orchestrator.cli, orchestrator.runner, orchestrator.backends, pamdi_node.agent.server; print("ok")'
step verify pamdi models verify --device cuda
pamdi models verify --device cuda --json >"$OUT/verify.json" 2>>"$LOG"
for m in resnet50 gpt2 resnet56 tiny; do
  step "profile-$m" pamdi profile "$m" --device cuda --repeats 31 --out "$OUT/profiles/"
done
step pytest "$PY" -m pytest -p no:cacheprovider -m cuda -s -q tests/test_gpu.py
echo "gpu-check: exit $status" | tee -a "$LOG"
exit "$status"
