#!/usr/bin/env bash
# The GPU benchmark in one command: matmul peak, surface sweeps (MLP, ResNet-20/56, vmap vs
# map), HVP/gradient costs, the 51x51 ResNet-56 extrapolation. See scripts/bench_gpu.py.
#   scripts/bench_gpu.sh [--quick] [--device auto|cpu|gpu] [--json FILE] ...
# PYTHON picks the interpreter (default: python; e.g. PYTHON=.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
exec "${PYTHON:-python}" scripts/bench_gpu.py "$@"
