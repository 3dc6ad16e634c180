#!/usr/bin/env bash
# Runs ON a machine of several GPUs (4 × H100 for issue 7), from the repository root, with .gpu/bundle.tgz
# carried (made by scripts/gpu-bundle.sh): unpacks the bundle (gpu-unpack.sh), prints the GPUs, then runs
# the expert-parallel check (scripts/gpu-moe-check.mjs: NCCL all-to-all, and the MoE fixtures under ep 2/4
# with each placement, expert slicing, tp2 × ep2 and the all-to-all dispatch, plain and coordinated,
# against one GPU). NVLink multicast stays off (NCCL_NVLS_ENABLE=0). Results: $OUT/moe-check-h100.json and
# $OUT/moe-check.log. ZINFER_MOE_TIMEOUT (seconds, default 240) bounds the whole run; the check's own
# budget (ZINFER_MOE_CHECK_BUDGET_S) defaults to 60 s less. Exit code: the check's, 124 on timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh
export NCCL_NVLS_ENABLE=0
mkdir -p "$OUT"
total=${ZINFER_MOE_TIMEOUT:-240}
export ZINFER_MOE_CHECK_BUDGET_S=${ZINFER_MOE_CHECK_BUDGET_S:-$((total - 60))}
echo "== machine: bundle $(head -1 "$dir/COMMIT" 2>/dev/null), node $(node --version)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total --format=csv
echo "== moe check"
timeout -k 10 "$total" node "$dir/scripts/gpu-moe-check.mjs" 2>&1 | tee "$OUT/moe-check.log"
rc=${PIPESTATUS[0]}
echo "gpu-moe-check exit code $rc; results in $OUT"
exit $rc
