// The cpu backend's thread pool: shares of a dispatch are claimed by whichever threads are awake, so a
// late worker (asleep, or its core taken) never holds a kernel up, and every share still runs exactly once.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, Rng } from '@zinfer/core';
import { WasmHeap } from '../src/cpu/heap.js';
import { MAX_POOL_THREADS, ThreadPool } from '../src/cpu/thread-pool.js';
import { loadKernelModule } from '../src/cpu/wasm-module.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

/**
 * `dispatches` k_add runs over random lengths, the output poisoned with NaN before each: every element
 * must come back as a + b, whichever threads took which shares.
 */
async function addMany(threads: number, cores: number, spinMs: number, dispatches: number, seed: number): Promise<void> {
  const km = await loadKernelModule();
  const heap = new WasmHeap();
  const pool = new ThreadPool(km.module, heap.memory, km.names, threads, cores, spinMs);
  await pool.start();
  const add = pool.kernel('k_add');
  const max = 4099;
  const [a, b, out, args] = [heap.alloc(max * 4, 'a'), heap.alloc(max * 4, 'b'), heap.alloc(max * 4, 'out'), heap.alloc(16, 'args')];
  const rng = Rng.fromSeed(seed);
  for (let i = 0; i < max; i++) {
    heap.f32[(a >>> 2) + i] = rng.next() * 100;
    heap.f32[(b >>> 2) + i] = i;
  }
  try {
    for (let d = 0; d < dispatches; d++) {
      const n = 1 + Math.floor(rng.next() * max);
      heap.f32.fill(NaN, out >>> 2, (out >>> 2) + max);
      heap.i32.set([a, b, n, out], args >>> 2);
      pool.run(add, args, true);
      for (let i = 0; i < n; i++) {
        const want = Math.fround(heap.f32[(a >>> 2) + i] + heap.f32[(b >>> 2) + i]);
        if (heap.f32[(out >>> 2) + i] !== want) assert.unreachable(`dispatch ${d} (${n} elements, ${threads} threads, spin ${spinMs} ms): element ${i} is ${heap.f32[(out >>> 2) + i]}, not ${want}`);
      }
      if (d % 97 === 0) await new Promise((r) => setTimeout(r, 1)); // let the workers fall asleep now and then
    }
  } finally {
    await pool.close();
  }
}

test('every share runs once, with workers that sleep between dispatches (no polling) and wake late', async () => {
  await addMany(4, 4, 0, 1500, 31);
});

test('every share runs once with polling workers, and with more threads than cores', async () => {
  await addMany(3, 3, 0.1, 1500, 32);
  await addMany(6, 2, 0.1, 500, 33);
});

test('a pool refuses a thread count outside 1 … MAX_POOL_THREADS', async () => {
  const km = await loadKernelModule();
  const heap = new WasmHeap();
  for (const bad of [0, MAX_POOL_THREADS + 1, 2.5]) {
    try {
      new ThreadPool(km.module, heap.memory, km.names, bad, 2);
      assert.unreachable(`${bad} threads accepted`);
    } catch (e) {
      assert.instance(e, BackendError);
      assert.match(String(e), /threads/);
    }
  }
});

test.run();
