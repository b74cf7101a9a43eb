#!/usr/bin/env bash
# Release check: build the wheel and sdist, `twine check` them, install the wheel in a fresh virtual environment
# and run two commands outside the repository (so nothing is read from the source tree).
#
#   bash scripts/check_wheel.sh            # CI runs it after the tests (.ci/run)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m build --outdir "$work/dist" "$root" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
python -m twine check --strict "$work"/dist/*
python -m venv "$work/venv"
"$work/venv/bin/pip" install -q torch==2.13.0 "$work"/dist/*.whl
cd "$work"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
"$work/venv/bin/python" -c "import mdlm_dna, sys; assert '$root' not in mdlm_dna.__file__, mdlm_dna.__file__; print('mdlm_dna', mdlm_dna.__version__, 'from', mdlm_dna.__file__)"
"$work/venv/bin/python" -m mdlm_dna.pretrain trainer.max_steps=5 trainer.enable_progress_bar=false >"$work/pretrain.log" 2>&1 \
  || { tail -30 "$work/pretrain.log"; exit 1; }
grep "val NELBO" "$work/pretrain.log"
"$work/venv/bin/python" -m mdlm_dna.sample ckpt=ecoli num_samples=2 progress=false >"$work/sample.log" 2>&1 \
  || { tail -30 "$work/sample.log"; exit 1; }
tail -1 "$work/sample.log"
echo "wheel check passed"
