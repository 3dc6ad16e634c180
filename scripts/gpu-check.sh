#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, with .gpu/bundle.tgz carried (made by
# scripts/gpu-bundle.sh): unpacks the bundle to /tmp, puts its node on PATH, prints the machine, then runs
# scripts/gpu-check.mjs (conformance, parity, microbench). Results: $OUT/gpu-check.json and gpu-check.log.
# Exit code: that of gpu-check.mjs (0 pass, 1 failures, 2 setup, 3 no GPU), 124 if it ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh

echo "== machine"
echo "bundle $(head -1 "$dir/COMMIT" 2>/dev/null) ($(($(stat -c %s "$bundle") / 1048576)) MiB), node $(node --version)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv
  nvidia-smi | grep -o 'CUDA Version: [0-9.]*' || true
else
  echo "nvidia-smi not found"
fi

# The budget is 10 minutes a command: leave time for the summary to come back.
timeout -k 10 "${ZINFER_GPU_CHECK_TIMEOUT:-540}" node "$dir/scripts/gpu-check.mjs"
rc=$?
echo "gpu-check exit code $rc; results in $OUT"
exit $rc
