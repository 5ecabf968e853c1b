#!/usr/bin/env bash
# One short lease of an offline GPU machine (python3 with a CUDA torch, no network): install medseg's
# dependencies from wheels carried in .whl/ (see benchmarks/README.md, "GPU results"), then run what is
# asked: `bench` (benchmarks/gpu.sh at reduced repeats), `plan` (medseg plan measured on the GPU),
# `claims` (the GPU budgets of the claim experiments). Everything lands in $OUT (default runs/gpu-lease).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu-lease}"; mkdir -p "$OUT"
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
python3 -c "import torch, monai, medseg; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'monai', monai.__version__)" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for what in "$@"; do
  case "$what" in
    bench)
      # latency (512^2 x 300 only, 2 repeats), Dice, training, end to end: ~3 minutes on an H200
      timeout "${BENCH_S:-240}" env PYTHON=python3 OUT="$OUT" bash benchmarks/gpu.sh --repeats 2 --sizes 512x512x300 \
        --cases latency dice training e2e 2>&1 | tail -60 ;;
    plan)
      python3 - "$OUT" <<'PY'
import sys, time, subprocess, torch
from pathlib import Path
from medseg.data.registry import generate_phantom
out = Path(sys.argv[1]) / "plan"
dataset = generate_phantom("ct_phantom", out / "data", 12, 1, 0)
for memory in ("24GB", "80GB"):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medseg", "plan", str(dataset.parent), "--gpu-memory", memory, "-o", str(out / f"pipeline-{memory}.yaml")], check=True)
    print(f"medseg plan --gpu-memory {memory}: {time.perf_counter() - start:.1f} s (CUDA here: {torch.cuda.is_available()})")
PY
      rm -rf "$OUT/plan/data" ;;
    claims)
      bash pipelines/experiments/gpu_claims.sh "$OUT" ;;
  esac
done
