#!/usr/bin/env bash
# Builds everything the GPU machine needs into one tarball, .gpu/bundle.tgz (git-ignored), under 64 MiB:
# a Node.js binary (the GPU machine has none), the built @zinfer packages the GPU scripts use (core,
# kernels with the CUDA kernel sources, parallel, moe, offload; server too when a GPU script names it),
# their production dependencies only (no tsx: the scripts are plain JS), the fixture models and every
# scripts/gpu-*.mjs, gpu-*.py and gpu-*.sh (a glob, so new GPU scripts travel without editing this file).
# Run here, from the repository root:                     bash scripts/gpu-bundle.sh
# Then on the GPU machine, with .gpu/bundle.tgz carried:  bash scripts/gpu-check.sh; bash scripts/gpu-bench.sh
# (or bash scripts/gpu-parallel.sh on a machine of several GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=$root/.gpu/bundle.tgz
mkdir -p "$root/.gpu"
# A private staging folder: other checkouts' helpers may bundle at the same time.
stage=$(mktemp -d "$root/.gpu/stage.XXXXXX")
trap 'rm -rf "$stage" "$bundle.tmp.$$"' EXIT

# The packages: server only when a GPU script names it (it brings ws, msgpackr, commander, ...; its 13 MB
# embedded model is not packed: the working tree carried with the bundle has it, packages/server/model).
pkgs=(core kernels parallel moe offload)
if grep -qsE "@zinfer/server" scripts/gpu-*.mjs scripts/gpu-*.sh; then pkgs+=(server); fi
projects=$(printf '@zinfer/%s,' "${pkgs[@]}")
NX_DAEMON=false npx nx run-many -t build --projects="${projects%,}" --outputStyle=static >/dev/null

mkdir -p "$stage/node_modules/@zinfer" "$stage/scripts"
bash "${ZINFER_SHARED_DIR:-$root/../shared}/gpu/pack-node.sh" "$root/.gpu/node.tar.xz" >/dev/null
cp "$root/.gpu/node.tar.xz" "$stage/node.tar.xz"

# The workspace packages as installed packages: package.json, dist, and the kernels' cuda/ sources.
for pkg in "${pkgs[@]}"; do
  dst=$stage/node_modules/@zinfer/$pkg
  mkdir -p "$dst"
  cp "packages/$pkg/package.json" "$dst/"
  cp -r "packages/$pkg/dist" "$dst/"
  find "$dst/dist" -name '*.map' -delete
done
cp -r packages/kernels/cuda "$stage/node_modules/@zinfer/kernels/cuda"

# Production dependencies: the dependency closure of the packages (optional ones where installed;
# peer dependencies, e.g. valibot's typescript, left out), copied from the workspace's node_modules and
# resolved as Node resolves them: a package's own node_modules first (npm keeps a version there when the
# root holds another, e.g. the server's commander 14 beside a tool's commander 4), then its parents'.
node - "$stage" "${pkgs[@]}" <<'EOF'
const { existsSync, readFileSync, cpSync } = require('node:fs');
const { dirname, join } = require('node:path');
const [stage, ...pkgs] = process.argv.slice(2);
const seen = new Set(); // resolved folders
const copies = []; // [from, to]
// Where `name` resolves from the folder `from` (a package's folder): its node_modules, then each parent's.
const resolveFrom = (name, from) => {
  for (let d = from; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (d === '.' || d === dirname(d)) return null; // an optional dependency for another platform
  }
};
const visit = (deps, from) => {
  for (const name of Object.keys(deps ?? {})) {
    if (name.startsWith('@zinfer/')) continue;
    const dir = resolveFrom(name, from);
    if (!dir || seen.has(dir)) continue;
    seen.add(dir);
    // Copied on its own unless it sits inside a folder already copied (its nested node_modules go along).
    const inside = [...seen].some((d) => d !== dir && dir.startsWith(d + '/'));
    if (!inside) copies.push([dir, dir.replace(/^packages\/([^/]+)\//, 'node_modules/@zinfer/$1/')]);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    visit(pkg.dependencies, dir);
    visit(pkg.optionalDependencies, dir);
  }
};
for (const p of pkgs) visit(JSON.parse(readFileSync(`packages/${p}/package.json`, 'utf8')).dependencies, `packages/${p}`);
for (const [from, to] of copies) cpSync(from, join(stage, to), { recursive: true, dereference: true });
console.log(`dependencies: ${copies.map(([from]) => from.replace(/^node_modules\//, '')).sort().join(', ')}`);
EOF
rm -rf "$stage/node_modules/@koromix/koffi-linux-x64/musl_x64" # glibc machine

mkdir -p "$stage/fixtures"
cp -r fixtures/models "$stage/fixtures/models"
cp -r fixtures/moe "$stage/fixtures/moe"
cp scripts/gpu-*.mjs scripts/gpu-*.py scripts/gpu-*.sh "$stage/scripts/"
git rev-parse HEAD >"$stage/COMMIT" 2>/dev/null || true
git status --porcelain >>"$stage/COMMIT" 2>/dev/null || true

tar -C "$stage" -czf "$bundle.tmp.$$" .
mv "$bundle.tmp.$$" "$bundle"
echo "packages: ${pkgs[*]}; scripts: $(cd "$stage/scripts" && echo *)"
bytes=$(stat -c %s "$bundle")
echo "bundle: $bundle, $(awk "BEGIN { printf \"%.1f\", $bytes / 1048576 }") MiB ($bytes bytes)"
if (( bytes >= 64 * 1048576 )); then echo "bundle exceeds 64 MiB: the GPU machine cannot take it" >&2; exit 1; fi
