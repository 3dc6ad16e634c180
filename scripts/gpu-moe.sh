#!/usr/bin/env bash
# Runs ON a machine of 4 GPUs (4 × H100 for issue 7), from the repository root, with .gpu/bundle.tgz
# carried (made by scripts/gpu-bundle.sh): unpacks the bundle (gpu-unpack.sh), prints the machine and its
# GPUs, then runs the MoE benchmark (scripts/gpu-moe-bench.mjs: Mixtral-8x7B-shape bf16 on 4 and 2 GPUs,
# bs1 decode against the active-parameter HBM limit, bs64 throughput, transformers' device_map="auto" peer).
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0). Results in $OUT: moe-h100.json, moe-bench-detail.json,
# moe-bench.log. ZINFER_MOE_BENCH_TIMEOUT (seconds, default 560) bounds the run; the bench's own budget
# (ZINFER_MOE_BENCH_BUDGET_S) defaults to 40 s less. Exit code: the bench's, 124 on timeout.
# (Re-created by the expert-parallel helper after its check wrapper overwrote this file by mistake; the
# check now lives in scripts/gpu-moe-check.sh. Its owner should compare with what it meant to commit.)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh
export NCCL_NVLS_ENABLE=0
mkdir -p "$OUT"
total=${ZINFER_MOE_BENCH_TIMEOUT:-560}
export ZINFER_MOE_BENCH_BUDGET_S=${ZINFER_MOE_BENCH_BUDGET_S:-$((total - 40))}
echo "== machine: bundle $(head -1 "$dir/COMMIT" 2>/dev/null), node $(node --version), $(nproc) cores"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv
echo "== moe bench"
timeout -k 10 "$total" node "$dir/scripts/gpu-moe-bench.mjs" 2>&1 | tee "$OUT/moe-bench.log"
rc=${PIPESTATUS[0]}
echo "gpu-moe-bench exit code $rc; results in $OUT"
exit $rc
