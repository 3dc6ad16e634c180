#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, with .gpu/bundle.tgz carried (made by
# scripts/gpu-bundle.sh): unpacks the bundle to /tmp (unless gpu-check.sh just did, from the same bundle),
# puts its node on PATH, prints the machine, then runs scripts/gpu-bench.mjs: writes the random-weight
# checkpoints with transformers, measures the limits, zinfer and the transformers peer in this one run.
# Results: $OUT/cuda-h100.json (the bench/results file), gpu-bench-detail.json, gpu-bench.log.
# Exit code: that of gpu-bench.mjs (0 all steps ran, 1 a step failed, 2 setup, 3 no GPU), 124 on timeout.
# ZINFER_GPU_BENCH_TIMEOUT (seconds, default 540) bounds the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh

echo "== machine"
echo "bundle $(head -1 "$dir/COMMIT" 2>/dev/null) ($(($(stat -c %s "$bundle") / 1048576)) MiB), node $(node --version), $(python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>&1 | tail -1)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,clocks.mem --format=csv
else
  echo "nvidia-smi not found"
fi
df -h /tmp | tail -1

timeout -k 10 "${ZINFER_GPU_BENCH_TIMEOUT:-540}" node "$dir/scripts/gpu-bench.mjs"
rc=$?
echo "gpu-bench exit code $rc; results in $OUT"
exit $rc
