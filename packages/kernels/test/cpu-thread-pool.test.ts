// The pool's dispatch with fewer threads than the pool: every element is computed whatever the thread
// count, with and without background work on the main thread, and thousands of back-to-back dispatches
// alternating small and full thread counts stay correct (workers left out of one dispatch, not waited for,
// must not take the next one's fields for it: thread-pool.ts).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WasmHeap } from '../src/cpu/heap.js';
import { ThreadPool } from '../src/cpu/thread-pool.js';
import { loadKernelModule } from '../src/cpu/wasm-module.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

test('dispatches of 1 to all threads, and with background work, compute every element; alternating ones stay correct', async () => {
  const km = await loadKernelModule();
  const heap = new WasmHeap();
  const pool = new ThreadPool(km.module, heap.memory, km.names, 4, 4);
  await pool.start();
  const k = pool.kernel('k_add');
  const n = 1001;
  const [a, b, out, args] = [heap.alloc(4 * n, 'a'), heap.alloc(4 * n, 'b'), heap.alloc(4 * n, 'out'), heap.alloc(64, 'args')];
  heap.i32.set([a, b, n, out], args >>> 2);
  const check = (what: string, scale: number) => {
    const f32 = heap.f32;
    for (let i = 0; i < n; i++) if (f32[(out >>> 2) + i] !== scale * 3 * i) assert.unreachable(`${what}: element ${i} is ${f32[(out >>> 2) + i]}, not ${scale * 3 * i}`);
  };
  const inputs = (scale: number) => {
    heap.f32.set(Float32Array.from({ length: n }, (_, i) => scale * i), a >>> 2);
    heap.f32.set(Float32Array.from({ length: n }, (_, i) => scale * 2 * i), b >>> 2);
    heap.f32.fill(-1, out >>> 2, (out >>> 2) + n);
  };
  try {
    for (const [threads, background] of [[1, false], [2, false], [3, false], [4, false], [99, false], [1, true], [2, true], [3, true]] as const) {
      inputs(1);
      let units = 3;
      pool.run(k, args, true, background ? () => units-- > 0 : null, threads);
      check(`${threads} threads${background ? ', background' : ''}`, 1);
    }
    for (let i = 1; i <= 3000; i++) {
      const scale = i % 7;
      inputs(scale);
      pool.run(k, args, true, null, i % 3 === 0 ? 4 : 1 + (i % 2));
      check(`dispatch ${i}`, scale);
    }
  } finally {
    await pool.close();
  }
});

test.run();
