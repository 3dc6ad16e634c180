#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, with .gpu/bundle.tgz carried (scripts/gpu-bundle.sh):
# unpacks the bundle (unless the same one is already there) and runs scripts/gpu-fp8-check.mjs: the decode
# GEMV / decode attention variants and the fp8 KV cache against the reference backend.
# Results: $OUT/gpu-fp8-check.json and gpu-fp8-check.log. Exit: 0 pass, 1 failures, 2 setup, 3 no GPU, 124 timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh
timeout -k 10 "${ZINFER_GPU_FP8_CHECK_TIMEOUT:-240}" node "$dir/scripts/gpu-fp8-check.mjs"
rc=$?
echo "gpu-fp8-check exit code $rc; results in $OUT"
exit $rc
