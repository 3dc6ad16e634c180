#!/usr/bin/env bash
# Runs ON a machine of 4 GPUs (4 × H100 for issue 7), from the repository root, with .gpu/bundle.tgz
# carried (made by scripts/gpu-bundle.sh): unpacks the bundle (gpu-unpack.sh), prints the machine, its GPU
# topology and the python packages, then runs the Mixtral-8x7B-shape MoE bench (scripts/gpu-moe-bench.mjs:
# 4 GPUs, then 2 on devices 0–1, bs1 decode against the active-parameter HBM limit, bs64 throughput, each
# against transformers' MixtralForCausalLM with device_map="auto" on the same GPUs). The correctness check
# of the MoE modes is scripts/gpu-moe-check.sh. NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
# Results in $OUT: moe-h100.json (the bench/results file), moe-bench-detail.json, moe-bench.log (written by
# the bench itself). ZINFER_MOE_BENCH_TIMEOUT (seconds, default 540) bounds the whole run; the bench's own
# budget (ZINFER_MOE_BENCH_BUDGET_S) is what is left minus 30 s, so it can close engines and print its
# table. Exit code: the bench's (0 every step ran, 1 a step failed, 2 setup, 3 no GPU), 124 on timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
total=${ZINFER_MOE_BENCH_TIMEOUT:-540}
source scripts/gpu-unpack.sh
gpu_machine index,name,driver_version,memory.total,memory.used 8
python3 -c 'import torch, transformers, accelerate; print("torch", torch.__version__, "transformers", transformers.__version__, "accelerate", accelerate.__version__)' 2>&1 | tail -1

echo "== MoE bench"
left=$((total - (SECONDS - start) - 10))
export ZINFER_MOE_BENCH_BUDGET_S=${ZINFER_MOE_BENCH_BUDGET_S:-$((left - 30))}
timeout -k 10 "$left" node "$dir/scripts/gpu-moe-bench.mjs"
rc=$?
echo "gpu-moe-bench exit code $rc; results in $OUT"
exit $rc
