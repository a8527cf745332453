#!/usr/bin/env bash
# The GPU check, as one prepared script (under 10 minutes on one GPU): the CUDA tests, the quick
# grokking run on CUDA, and vectorized ensembles of the grokking MLP at K = 1, 16, 64, 256
# members (wall time per member). Run from anywhere: bash benchmarks/gpu.sh
# PYTHON picks the interpreter (default: the repo's .venv, else python3); OUT keeps the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-$(mktemp -d)}
export WANDB_MODE=disabled DYNLAB_THREADS=${DYNLAB_THREADS:-4}

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available())"

echo "== CUDA tests"
timeout 240 "$PYTHON" -m pytest -q -k cuda tests/ -p no:cacheprovider

echo "== quick grokking run on CUDA"
start=$(date +%s)
timeout 180 "$PYTHON" cli.py run grokking --device cuda --no-wandb --out "$OUT/runs"
echo "wall: $(( $(date +%s) - start )) s"

echo "== ensembles on CUDA (grokking MLP, quick profile)"
timeout 300 "$PYTHON" benchmarks/ensemble.py scaling --device cuda --members 1,16,64,256
