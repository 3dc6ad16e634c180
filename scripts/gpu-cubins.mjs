#!/usr/bin/env node
// Fills the NVRTC cubin cache for the GPU machine on the build machine, so a device call loads every
// kernel from the carried cache instead of compiling it there (minutes of device time after each change
// to a shared header). The cache key is the source, the headers, the NVRTC options and NVRTC's version
// (src/cuda/kernel-cache.ts), so the NVRTC here must have the GPU machine's version (13.0 on the lent
// machines) and the include folder must be named as the GPU machine names it (its -I option is keyed).
// Usage (tsx: the kernels package's sources are imported directly):
//   ZINFER_CUDA_LIB_DIR=/path/to/nvrtc/lib node --import tsx scripts/gpu-cubins.mjs [--arch 90]
//     [--include /usr/local/cuda/targets/x86_64-linux/include] [--out .gpu/cubins.tgz] [--sources DIR]
// --sources: another folder of .cu/.cuh files (an A/B against an older kernel carried to the GPU machine).
// Compiles into a lasting cache here (--cache, so a second run compiles only what changed) and writes
// only this source tree's cubins (one per .cu file) into the tarball, which the GPU scripts' callers
// unpack into /tmp/zinfer-cuda-cache.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { Nvrtc } from '../packages/kernels/src/cuda/nvrtc.ts';
import { compileUnits } from '../packages/kernels/src/cuda/kernel-cache.ts';
import { loadKernelSources } from '../packages/kernels/src/cuda/kernel-sources.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: '90' },
    include: { type: 'string', default: '/usr/local/cuda/targets/x86_64-linux/include' },
    out: { type: 'string', default: join(ROOT, '.gpu/cubins.tgz') },
    cache: { type: 'string', default: join(tmpdir(), 'zinfer-cubins-build') },
    sources: { type: 'string', default: join(ROOT, 'packages/kernels/cuda') },
  },
});
const nvrtc = Nvrtc.open();
const sources = loadKernelSources(resolve(values.sources));
const cache = resolve(values.cache);
mkdirSync(cache, { recursive: true });
const arch = Number(values.arch);
const t0 = performance.now();
const { compiled, cacheFiles: files } = compileUnits(nvrtc, sources, arch, values.include, cache);
console.log(`NVRTC ${nvrtc.version} (${nvrtc.path}): compiled ${compiled.length} of ${sources.units.size} units for sm_${arch} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
const out = resolve(values.out);
mkdirSync(dirname(out), { recursive: true }); // tar does not make the folder (.gpu/ is not in the repository)
const tar = spawnSync('tar', ['czf', out, '-C', cache, ...files], { stdio: 'inherit' });
if (tar.status !== 0) process.exit(1);
console.log(`wrote ${out}: ${files.length} cubins`);
