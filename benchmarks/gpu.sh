#!/usr/bin/env bash
# GPU figures in one run (under five minutes on one H100/H200): refiner inference and training in
# bf16 + channels-last + torch.compile as a share of the measured bf16 matmul rate, the paper's
# NYU schedule time, and DDP over every visible GPU. See benchmarks/bench_gpu.py.
#   bash benchmarks/gpu.sh                     # on a GPU machine
#   bash benchmarks/gpu.sh --device cpu --quick  # smoke test anywhere (figures mean nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" benchmarks/bench_gpu.py "$@"
