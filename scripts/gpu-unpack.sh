# Sourced by gpu-check.sh and gpu-bench.sh (ON the GPU machine, from the repository root): unpacks the
# carried bundle (.gpu/bundle.tgz, made by scripts/gpu-bundle.sh) into /tmp/zinfer-gpu unless the same
# bundle is already there, and puts its node on PATH. Sets $bundle and $dir; exits 2 on a setup problem.
export NCCL_NVLS_ENABLE=0
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
