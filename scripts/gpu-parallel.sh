#!/usr/bin/env bash
# Runs ON a machine of several GPUs (4 × H100 for issue 6), from the repository root, with .gpu/bundle.tgz
# carried (made by scripts/gpu-bundle.sh): unpacks the bundle to /tmp and puts its node on PATH
# (gpu-unpack.sh), prints the machine and its GPU topology, runs the NCCL / parallel check
# (scripts/gpu-parallel-check.mjs, when the bundle has it), then the parallel bench
# (scripts/gpu-parallel-bench.mjs: synthetic Llama-2-13B / 70B shapes at tp1/tp2/tp4, pp4, tp2 × pp2 and 4
# replicas). NVLink multicast stays off (NCCL_NVLS_ENABLE=0) for this shell and every child.
# Results in $OUT: parallel-h100.json (the bench/results file), parallel-bench-detail.json,
# parallel-bench.log, parallel-check.log (and whatever the check writes).
# ZINFER_PARALLEL_TIMEOUT (seconds, default 560) bounds the whole run; ZINFER_PARALLEL_CHECK_TIMEOUT
# (default 150) the check; the bench gets the rest and skips the steps its budget cannot finish.
# Exit code: the bench's (0 every step ran, 1 a step failed, 2 setup, 3 no GPU), 124 on timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
total=${ZINFER_PARALLEL_TIMEOUT:-560}
source scripts/gpu-unpack.sh
export NCCL_NVLS_ENABLE=0
mkdir -p "$OUT"

echo "== machine"
echo "bundle $(head -1 "$dir/COMMIT" 2>/dev/null) ($(($(stat -c %s "$bundle") / 1048576)) MiB), node $(node --version), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,clocks.mem --format=csv
  nvidia-smi topo -m 2>/dev/null | head -12
else
  echo "nvidia-smi not found"
fi

echo "== parallel check"
check=$dir/scripts/gpu-parallel-check.mjs
if [[ -f $check ]]; then
  timeout -k 10 "${ZINFER_PARALLEL_CHECK_TIMEOUT:-150}" node "$check" 2>&1 | tee "$OUT/parallel-check.log"
  check_rc=${PIPESTATUS[0]}
else
  echo "NOTE: scripts/gpu-parallel-check.mjs is not in the bundle: the check is skipped" | tee "$OUT/parallel-check.log"
  check_rc=skipped
fi

echo "== parallel bench"
left=$((total - (SECONDS - start) - 10))
if ((left < 60)); then echo "no time left for the bench (${left} s)"; exit 124; fi
# The bench's own budget leaves room to close engines and print its table before the hard limit.
export ZINFER_PARALLEL_BENCH_BUDGET_S=${ZINFER_PARALLEL_BENCH_BUDGET_S:-$((left - 40))}
timeout -k 10 "$left" node "$dir/scripts/gpu-parallel-bench.mjs"
rc=$?
echo "gpu-parallel-check: $check_rc; gpu-parallel-bench exit code $rc; results in $OUT"
exit $rc
