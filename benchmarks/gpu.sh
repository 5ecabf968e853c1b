#!/usr/bin/env bash
# GPU ratio benchmarks: the same cases as `make bench`, at the issue's GPU sizes (512x512x300 and
# 512x512x800 prediction, 128^3 training patches), stitching on the GPU and on the host.
# Needs a CUDA build of torch in .venv (e.g. make install TORCH_SPEC="torch==2.13.0 --index-url .../cu124").
# Writes runs/benchmarks/results-cuda.json and .md; paste the table into benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'CUDA is not available to this torch build')"
# install only where medseg is not importable yet (an offline GPU machine brings its wheels; see benchmarks/README.md)
"$PY" -c "import medseg, monai" 2>/dev/null || "$PY" -m pip --disable-pip-version-check install -q -e ".[bench]"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" -m benchmarks.run --device "${DEVICE:-cuda}" --out "${OUT:-runs/benchmarks}" "$@"
