# Sourced by the gpu-*.sh wrappers (ON the GPU machine, from the repository root): unpacks the
# carried bundle (.gpu/bundle.tgz, made by scripts/gpu-bundle.sh) into /tmp/zinfer-gpu unless the same
# bundle is already there, and puts its node on PATH. Sets $bundle and $dir, makes $OUT, defines
# gpu_machine, ZINFER_CUDA_CACHE_DIR; exits 2 on a setup problem.
export NCCL_NVLS_ENABLE=0
# Every process shares the carried cubin cache (.gpu/cubins.tgz unpacked there): the engines name it, and
# this makes the microbench probes (cudaMicrobench opens its own stream) load from it instead of compiling.
export ZINFER_CUDA_CACHE_DIR=${ZINFER_CUDA_CACHE_DIR:-/tmp/zinfer-cuda-cache}
bundle=${ZINFER_GPU_BUNDLE:-.gpu/bundle.tgz}
export OUT=${OUT:-$(mktemp -d /tmp/zinfer-out.XXXXXX)}
dir=/tmp/zinfer-gpu

if [[ ! -f $bundle ]]; then
  echo "SETUP: no bundle at $bundle; run 'bash scripts/gpu-bundle.sh' on the build machine and carry .gpu/bundle.tgz" >&2
  exit 2
fi
stamp="$(stat -c '%s %Y' "$bundle")"
if [[ ! -x $dir/node/bin/node || "$(cat "$dir/.bundle-stamp" 2>/dev/null)" != "$stamp" ]]; then
  rm -rf "$dir"
  mkdir -p "$dir/node/bin"
  tar -xzf "$bundle" -C "$dir" || { echo "SETUP: cannot unpack $bundle" >&2; exit 2; }
  tar -xJf "$dir/node.tar.xz" -C "$dir/node/bin" || { echo "SETUP: cannot unpack node" >&2; exit 2; }
  echo "$stamp" >"$dir/.bundle-stamp"
fi
export PATH=$dir/node/bin:$PATH
mkdir -p "$OUT"

# gpu_machine FIELDS [TOPO_LINES]: the "== machine" header of the multi-GPU wrappers: the bundle's commit
# and size, node, cores, memory, then nvidia-smi's FIELDS per GPU and, given TOPO_LINES, that many lines
# of its topology matrix.
gpu_machine() {
  echo "== machine"
  echo "bundle $(head -1 "$dir/COMMIT" 2>/dev/null) ($(($(stat -c %s "$bundle") / 1048576)) MiB), node $(node --version), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 " GiB" }')"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu="$1" --format=csv
    if [[ -n ${2:-} ]]; then nvidia-smi topo -m 2>/dev/null | head -"$2"; fi
  else
    echo "nvidia-smi not found"
  fi
}
