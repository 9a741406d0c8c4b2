#!/usr/bin/env bash
# The GPU quickstart in one command, on a machine with PyTorch and transformers but no network, from the repository
# root with .gpu/ (built here by `python bench/gpu_quickstart.py bundle`) carried beside it. Writes to $OUT
# (the device tool's output folder) or runs/: quickstart-gpu.ipynb and quickstart-gpu/. More papermill arguments
# pass through: bash bench/gpu_quickstart.sh -p batch_size 64
set -euo pipefail
cd "$(dirname "$0")/.."
# The carried wheels go to a folder of their own, so the machine's packages stay as they are. It lies under the
# interpreter's prefix where that is writable: dill (under datasets' fingerprinting) pickles functions of modules
# outside sys.prefix by value, which fails on datasets' own code.
SITE="$(python3 -c 'import sys; print(sys.prefix)')/boolq-site"
mkdir -p "$SITE" 2>/dev/null && [ -w "$SITE" ] || SITE=/tmp/boolq-site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .gpu/wheels/*.whl
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 WANDB_MODE=disabled
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/gpu_quickstart.py run --out "${OUT:-runs}" "$@"
