#!/usr/bin/env bash
# The secondary, larger-budget GPU runs of the claim experiments (issue 17: "the two most undecided"), as one
# prepared script for a short GPU lease: `benchmarks/gpu_lease.sh claims` calls it with the lease's output folder.
# Which runs: $GPU_CLAIMS (default: H-DenseUNet, the widest undecided interval with a `large` budget in its design,
# then MICDIR's `large` budget). DSAIF, the other undecided one, defines no larger budget (its design: a GPU only
# frees the CPU). Each run is bounded by $CLAIM_S seconds; results land in OUT/<method>_large/results.{json,md}
# and are reported separately from the CPU verdicts, as the designs say.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-runs/gpu-claims}"; mkdir -p "$OUT"
for method in ${GPU_CLAIMS:-hdenseunet micdir}; do
  case "$method" in
    hdenseunet) args=(--processes 6) ;;
    micdir) args=(--processes 5) ;;
    nested) args=(--processes 15) ;;
    *) echo "gpu_claims: no large budget for '$method'" >&2; continue ;;
  esac
  echo "== $method, budget large ($(date -u +%H:%M:%S))"
  timeout "${CLAIM_S:-270}" python3 "pipelines/experiments/${method}_claim.py" --out "$OUT/${method}_large" \
    --device cuda --budget large "${args[@]}" 2>&1 | grep -v -i warn | tail -40
done
