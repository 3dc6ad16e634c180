#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, with .gpu/bundle.tgz and .gpu/cubins.tgz carried: several
# of the gpu-*.sh parts in one device call, within the device tool's limits (at most 8 files come back, one
# call is cut at its time limit). Usage:
#   bash scripts/gpu-session.sh PART:SECONDS[:VAR=VALUE;VAR=VALUE...] [...]
# The optional third field sets environment variables for that part alone (values may hold ',', ':' and
# spaces; quote the whole spec), so one call can run a check with a kernel switch on and a bench without.
# PART: check | bench | parallel | moe | moe-check | shape | sample | fp8 | attention (gpu-check.sh, gpu-bench.sh,
# gpu-parallel.sh, gpu-moe.sh, gpu-moe-check.sh, gpu-shape-profile.mjs, gpu-sample-bench.mjs, gpu-fp8-check.sh,
# gpu-attention-layout.mjs); each gets its own environment from the caller
# (ZINFER_GPU_CHECK_ONLY, ZINFER_PARALLEL_PARTS, ZINFER_SHAPES, ...) and runs under `timeout -k` with its
# SECONDS, so one hung part cannot take the others' time. ZINFER_SESSION_BUDGET (default 570 s) stops
# starting parts once spent. Each part's files are packed into $OUT/PART.tgz as soon as it ends and its
# last summary lines are printed then (not at the end), so a call cut short still returns what finished.
set -uo pipefail
cd "$(dirname "$0")/.."
rm -rf /tmp/zinfer-session
mkdir -p /tmp/zinfer-cuda-cache
[[ -f .gpu/cubins.tgz ]] && tar xzf .gpu/cubins.tgz -C /tmp/zinfer-cuda-cache
source scripts/gpu-unpack.sh >/dev/null
FINAL_OUT=$OUT
budget=${ZINFER_SESSION_BUDGET:-570}
start=$SECONDS
echo "== session: bundle $(head -1 "$dir/COMMIT" 2>/dev/null); $(nvidia-smi -L 2>/dev/null | wc -l) GPUs; parts: $*"

run_part() { # PART SECONDS OUTDIR
  local part=$1 secs=$2 out=$3
  case $part in
    check) OUT=$out ZINFER_GPU_CHECK_TIMEOUT=$((secs - 10)) bash scripts/gpu-check.sh ;;
    bench) OUT=$out ZINFER_GPU_BENCH_TIMEOUT=$((secs - 10)) bash scripts/gpu-bench.sh ;;
    parallel) OUT=$out ZINFER_PARALLEL_TIMEOUT=$((secs - 10)) bash scripts/gpu-parallel.sh ;;
    moe) OUT=$out ZINFER_MOE_BENCH_TIMEOUT=$((secs - 10)) bash scripts/gpu-moe.sh ;;
    moe-check) OUT=$out ZINFER_MOE_TIMEOUT=$((secs - 10)) bash scripts/gpu-moe-check.sh ;;
    shape) OUT=$out ZINFER_BENCH_BUDGET_S=$((secs - 15)) node "$dir/scripts/gpu-shape-profile.mjs" ;;
    sample) OUT=$out node "$dir/scripts/gpu-sample-bench.mjs" ;;
    fp8) OUT=$out ZINFER_FP8_CHECK_BUDGET_S=$((secs - 20)) ZINFER_GPU_FP8_CHECK_TIMEOUT=$((secs - 10)) bash scripts/gpu-fp8-check.sh ;;
    attention) OUT=$out node "$dir/scripts/gpu-attention-layout.mjs" ;;
    *) echo "unknown part $part"; return 2 ;;
  esac
}

for spec in "$@"; do
  part=${spec%%:*}
  rest=${spec#*:}
  [[ $rest == "$spec" ]] && rest=120
  secs=${rest%%:*}
  envs=()
  if [[ $rest == *:* ]]; then IFS=';' read -r -a envs <<<"${rest#*:}"; fi
  left=$((budget - (SECONDS - start)))
  if ((left < 30)); then echo "== $part: skipped, ${left} s left"; continue; fi
  ((secs > left)) && secs=$left
  name=$part n=2
  while [[ -e /tmp/zinfer-session/$name ]]; do name=$part-$((n++)); done # a part run twice (an A/B): shape, shape-2
  out=/tmp/zinfer-session/$name
  mkdir -p "$out"
  echo "== $part (${secs} s) at $((SECONDS - start)) s${envs[*]:+; env: ${envs[*]}}"
  timeout -k 10 "$secs" env "${envs[@]}" bash -c "$(declare -f run_part); dir=$dir; run_part $part $secs $out" >"$out/run.log" 2>&1
  echo "-- $name exit code $? at $((SECONDS - start)) s"
  grep -hE 'passed|FAIL|ERROR|_ms_per_token|tokens_per_s|speedup|over_limit|graphed|correctness|Lamport' "$out"/*.log 2>/dev/null | grep -v 'n/a' | cut -c1-300 | tail -14
  tar czf "$FINAL_OUT/$name.tgz" -C /tmp/zinfer-session "$name"
done
echo "== session done at $((SECONDS - start)) s; files: $(cd "$FINAL_OUT" && ls)"
