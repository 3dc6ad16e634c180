#!/usr/bin/env bash
# Runs ON a machine of 4 GPUs, from the repository root, with .gpu/bundle.tgz carried (made by
# scripts/gpu-bundle.sh): two node processes on one host, as two machines would be joined (issue 6):
# node 0 on GPUs 0,1 (CUDA_VISIBLE_DEVICES=0,1), node 1 on GPUs 2,3 (started by the script itself with
# CUDA_VISIBLE_DEVICES=2,3, WORLD_SIZE=2, RANK=1, MASTER_ADDR=127.0.0.1), the fixtures at tp 4 (NCCL across
# the processes) and tp 2 × pp 2 (pipeline across them) against one GPU (scripts/gpu-multinode.mjs).
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0). Results: $OUT/multinode-check.json, $OUT/multinode-check.log.
# ZINFER_MULTINODE_TIMEOUT (seconds, default 300) bounds the run; ZINFER_MULTINODE_MODELS picks fixtures.
# Exit code: the check's (0 all passed, 1 a case failed, 2 setup, 3 too few GPUs), 124 on timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh
gpu_machine index,name,driver_version,memory.total,memory.used 8
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
if ((gpus < 4)); then echo "this check needs 4 GPUs (2 a node process), $gpus visible"; exit 3; fi
echo "== multi-node check (2 node processes × 2 GPUs)"
CUDA_VISIBLE_DEVICES=0,1 ZINFER_FOLLOWER_DEVICES=2,3 timeout -k 10 "${ZINFER_MULTINODE_TIMEOUT:-300}" \
  node "$dir/scripts/gpu-multinode.mjs" 2>&1 | tee "$OUT/multinode-check.log"
rc=${PIPESTATUS[0]}
echo "gpu-multinode exit code $rc; results in $OUT"
exit $rc
