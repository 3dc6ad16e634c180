#!/usr/bin/env node
// Runs ON the GPU machine (cuobjdump comes with its CUDA toolkit), after `source scripts/gpu-unpack.sh`: for
// every kernel of the cubins or binaries given that waits on the kernel before it (griddepcontrol.wait, SASS
// ACQBULK), its global loads counted before each wait in program order, all | of the weight stream, its
// non-coherent loads (ld.global.nc) anywhere, and
// the kernels that break PRE_WAIT_RULES (@zinfer/kernels/cuda, src/cuda/sass-audit.ts). gpu-check.mjs (part
// sass) applies the same rules to the engine's cubins; this prints the counts, for the nvcc microbenches too.
// Usage: node $dir/scripts/gpu-sass-audit.mjs /tmp/zinfer-cuda-cache/*.cubin > sass-audit.txt
import { spawnSync } from 'node:child_process';
import { importPackages } from './gpu-harness.mjs';

const [cuda] = await importPackages(['@zinfer/kernels/cuda']);
let listing = '';
for (const file of process.argv.slice(2)) {
  const r = spawnSync('cuobjdump', ['-sass', file], { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0) {
    console.error(`cuobjdump -sass ${file}: ${r.error?.message ?? r.stderr.slice(0, 200)}`);
    process.exit(2);
  }
  listing += r.stdout;
}
for (const [name, w] of cuda.loadsBeforeWaits(listing)) console.log(`${name} ${w.loads.join('|')} (stream ${w.stream.join('|')}; non-coherent ${w.nc})`);
const { kernels, violations } = cuda.preWaitViolations(listing);
console.log(`${kernels} kernels with a rule; ${violations.length} break it${violations.length ? `:\n  ${violations.join('\n  ')}` : ''}`);
process.exit(violations.length ? 1 : 0);
