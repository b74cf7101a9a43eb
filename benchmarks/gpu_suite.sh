#!/usr/bin/env bash
# Every GPU figure of mdlm-dna from one prepared command (issue 19); the logic is in gpu_suite/ (a module per step).
#
#   bash benchmarks/gpu_suite.sh                          # the device machine: $OUT/gpu_suite.{md,json,log}
#   bash benchmarks/gpu_suite.sh --dry-run --out DIR      # a CPU at tiny sizes (tests/test_gpu_suite.py)
#   bash benchmarks/gpu_suite.sh --only dit sampling      # some steps again
#
# The interpreter is $PYTHON if set, else python3: on the device machine that is the image's, which has
# torch, Triton and Lightning; the rest travels in device_wheels/ (scripts/fill_device_wheels.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_suite "$@"
