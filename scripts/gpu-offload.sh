#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, with .gpu/bundle.tgz carried (scripts/gpu-bundle.sh):
# unpacks the bundle (scripts/gpu-unpack.sh), prints the machine, then runs scripts/gpu-offload-check.mjs
# (streamed vs resident parity, short) unless ZINFER_OFFLOAD_SKIP_CHECK=1, and scripts/gpu-offload-bench.mjs
# (pinned H2D probe, the 47.5B fp16 Llama from the host tier at batch 64 and 256, the transformers +
# accelerate peer, the disk tier against the disk's read bandwidth). Results under $OUT:
# offload-check-h100.json, offload-h100.json (the bench/results file), offload-detail.json, logs.
# ZINFER_GPU_OFFLOAD_TIMEOUT (seconds, default 560) bounds the whole run; the bench gets what the check left.
# ZINFER_OFFLOAD_MULTI=1 runs scripts/gpu-offload-multi.mjs instead (4 GPUs: $OUT/offload-multi-h100.json).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh

echo "== machine"
echo "bundle $(head -1 "$dir/COMMIT" 2>/dev/null), node $(node --version), $(python3 -c 'import torch, transformers, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__)' 2>&1 | tail -1)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,pcie.link.gen.current,pcie.link.width.current --format=csv
else
  echo "nvidia-smi not found"
fi
free -g | head -2
df -h /tmp | tail -1

total=${ZINFER_GPU_OFFLOAD_TIMEOUT:-560}
start=$(date +%s)
if [[ ${ZINFER_OFFLOAD_MULTI:-0} == 1 ]]; then
  # The multi-GPU run alone (scripts/gpu-offload-multi.mjs): data-parallel ranks each fetching 1/N of every
  # layer + NCCL all-gather vs one GPU, H2D of each GPU and of all at once, parallel O_DIRECT disk reads.
  nvidia-smi topo -m 2>/dev/null | head -12
  export ZINFER_OFFLOAD_MULTI_BUDGET_S=$((total - 20))
  timeout -k 10 "$total" node "$dir/scripts/gpu-offload-multi.mjs"
  rc=$?
  echo "gpu-offload-multi exit code $rc; results in $OUT"
  exit $rc
fi
rc_check=0
if [[ ${ZINFER_OFFLOAD_SKIP_CHECK:-0} != 1 ]]; then
  timeout -k 5 "${ZINFER_OFFLOAD_CHECK_TIMEOUT:-90}" node "$dir/scripts/gpu-offload-check.mjs"
  rc_check=$?
  echo "gpu-offload-check exit code $rc_check"
fi
left=$((total - ($(date +%s) - start)))
export ZINFER_OFFLOAD_BUDGET_S=$((left - 15))
timeout -k 10 "$left" node "$dir/scripts/gpu-offload-bench.mjs"
rc=$?
echo "gpu-offload-bench exit code $rc; results in $OUT"
(( rc == 0 )) && rc=$rc_check
exit $rc
