#!/usr/bin/env bash
# Runs ON a machine of several GPUs (4 × H100 for issue 6), from the repository root, with .gpu/bundle.tgz
# carried (made by scripts/gpu-bundle.sh): unpacks the bundle to /tmp and puts its node on PATH
# (gpu-unpack.sh), prints the machine and its GPU topology, then runs the parts ZINFER_PARALLEL_PARTS names
# (comma-separated, in this order; default "allreduce,bench"):
#   allreduce  the peer-memory all-reduce vs NCCL (scripts/gpu-allreduce-check.mjs): correctness in
#              replayed CUDA graphs on 2 and 4 GPUs, latency table; ZINFER_ALLREDUCE_CHECK_TIMEOUT (120 s);
#   check      the NCCL / parallel check (scripts/gpu-parallel-check.mjs: fixtures under tp/pp identical to
#              one GPU, now with the peer all-reduce on); ZINFER_PARALLEL_CHECK_TIMEOUT (150 s);
#   bench      the parallel bench (scripts/gpu-parallel-bench.mjs: synthetic Llama-2-13B / 70B shapes at
#              tp1/tp2/tp4 with the peer all-reduce and with NCCL only, pp4, tp2 × pp2, 4 replicas); it
#              gets the time left and skips the steps its budget cannot finish.
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0) for this shell and every child.
# Results in $OUT: allreduce-check.json / allreduce-check.log, parallel-h100.json (the bench/results file),
# parallel-bench-detail.json, parallel-bench.log, parallel-check.log (and whatever the check writes).
# ZINFER_PARALLEL_TIMEOUT (seconds, default 570) bounds the whole run.
# Exit code: the bench's (0 every step ran, 1 a step failed, 2 setup, 3 no GPU), 124 on timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
total=${ZINFER_PARALLEL_TIMEOUT:-570}
parts=",${ZINFER_PARALLEL_PARTS:-allreduce,bench},"
has() { [[ $parts == *",$1,"* ]]; }
source scripts/gpu-unpack.sh
gpu_machine index,name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,clocks.mem 12

allreduce_rc=skipped
if has allreduce; then
  echo "== peer all-reduce check"
  ZINFER_ALLREDUCE_CHECK_BUDGET_S=$((${ZINFER_ALLREDUCE_CHECK_TIMEOUT:-120} - 15)) timeout -k 10 "${ZINFER_ALLREDUCE_CHECK_TIMEOUT:-120}" \
    node "$dir/scripts/gpu-allreduce-check.mjs" 2>&1 | tee "$OUT/allreduce-check.log"
  allreduce_rc=${PIPESTATUS[0]}
  # A failed or hung check must not hang the bench's engines too: they then run NCCL only (the JSON says so).
  if ((allreduce_rc != 0)); then export ZINFER_PEER_ALLREDUCE=0; echo "NOTE: the all-reduce check failed ($allreduce_rc): the bench runs NCCL only"; fi
fi

check_rc=skipped
check=$dir/scripts/gpu-parallel-check.mjs
if ! has check; then
  :
elif [[ -f $check ]]; then
  echo "== parallel check"
  timeout -k 10 "${ZINFER_PARALLEL_CHECK_TIMEOUT:-150}" node "$check" 2>&1 | tee "$OUT/parallel-check.log"
  check_rc=${PIPESTATUS[0]}
else
  echo "NOTE: scripts/gpu-parallel-check.mjs is not in the bundle: the check is skipped" | tee "$OUT/parallel-check.log"
  check_rc=skipped
fi

if ! has bench; then echo "gpu-allreduce-check: $allreduce_rc; gpu-parallel-check: $check_rc; results in $OUT"; exit 0; fi
echo "== parallel bench"
left=$((total - (SECONDS - start) - 10))
if ((left < 60)); then echo "no time left for the bench (${left} s)"; exit 124; fi
# The bench's own budget leaves room to close engines and print its table before the hard limit.
export ZINFER_PARALLEL_BENCH_BUDGET_S=${ZINFER_PARALLEL_BENCH_BUDGET_S:-$((left - 40))}
timeout -k 10 "$left" node "$dir/scripts/gpu-parallel-bench.mjs"
rc=$?
echo "gpu-allreduce-check: $allreduce_rc; gpu-parallel-check: $check_rc; gpu-parallel-bench exit code $rc; results in $OUT"
exit $rc
