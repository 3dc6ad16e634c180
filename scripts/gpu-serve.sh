#!/usr/bin/env bash
# Runs ON a GPU machine, for its CPU cores: the serving load benchmark of issue 5 (@zinfer/server's
# dist/bench-serve.js: 256 WebSocket streams against the embedded default model on the cpu backend). That
# issue's 8 × line needs more cores than this workplace's 2 (BENCHMARKS.md, "Serving load"); the GPU
# machines have 16 to 64. From the repository root, with .gpu/bundle.tgz carried (scripts/gpu-bundle.sh
# packs @zinfer/server because this script names it; the model comes from the working tree's
# packages/server/model). Arguments go to the bench (`--streams 256 --tokens 64 --threads N ...`).
# Results in $OUT: serve-<machine>.json and serve-bench.log. With ZINFER_SERVE_PROFILE=256,1 (stream counts) it
# first runs dist/bench-serve-profile.js for each (where a step's time goes, in-process, no sockets; threads
# from ZINFER_SERVE_THREADS, else the backend's default) into serve-profile.log.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-unpack.sh
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), node $(node --version), bundle $(head -1 "$dir/COMMIT" 2>/dev/null)"
IFS=',' read -r -a profiles <<<"${ZINFER_SERVE_PROFILE:-}"
for streams in "${profiles[@]}"; do
  tokens=32; ((streams == 1)) && tokens=200
  node "$dir/node_modules/@zinfer/server/dist/bench-serve-profile.js" --model "$PWD/packages/server/model" --streams "$streams" --tokens "$tokens" \
    --rounds 2 ${ZINFER_SERVE_THREADS:+--threads "$ZINFER_SERVE_THREADS"} 2>&1 | tee -a "$OUT/serve-profile.log"
done
node "$dir/node_modules/@zinfer/server/dist/bench-serve.js" --model "$PWD/packages/server/model" --results-dir "$OUT" "$@" 2>&1 | tee "$OUT/serve-bench.log"
exit "${PIPESTATUS[0]}"
