// The cpu backend: the whole conformance suite against the reference backend (threads: 2).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import { kernelBackendConformance } from '@zinfer/core/testing';
import { cpuBackend } from '../src/cpu.js';
import { referenceBackend } from '../src/reference.js';

// The kernels' .wasm is a build output: build it (a no-op when up to date) so tests run from a clean tree.
const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

for (const c of kernelBackendConformance(cpuBackend({ threads: 2 }), { oracle: referenceBackend() })) test(c.name, c.run);

// Every kernel split over the threads, however small (the default runs small ones on one thread).
for (const c of kernelBackendConformance(cpuBackend({ threads: 2, minParallelWork: 0 }), { oracle: referenceBackend() })) test(`split: ${c.name}`, c.run);

test.run();
