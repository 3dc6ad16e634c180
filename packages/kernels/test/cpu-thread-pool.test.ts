// The pool's dispatch: a kernel split over `threads` threads wakes only the workers it needs (their wake
// words move, the others' stay), every element is computed whatever the count, with and without
// background work on the main thread, and later dispatches still reach every worker.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WasmHeap } from '../src/cpu/heap.js';
import { ThreadPool } from '../src/cpu/thread-pool.js';
import { loadKernelModule } from '../src/cpu/wasm-module.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

/** The wake words of workers 1..threads-1 (the control block's last `threads` int32s, slot 0 unused). */
const wakes = (pool: ThreadPool): number[] => {
  const c = (pool as unknown as { control: Int32Array }).control;
  return Array.from(c.subarray(c.length - pool.threads + 1));
};

test('a dispatch wakes the workers its thread count names, and computes every element', async () => {
  const km = await loadKernelModule();
  const heap = new WasmHeap();
  const pool = new ThreadPool(km.module, heap.memory, km.names, 4, 4);
  await pool.start();
  const k = pool.kernel('k_add');
  const n = 1001;
  const [a, b, out, args] = [heap.alloc(4 * n, 'a'), heap.alloc(4 * n, 'b'), heap.alloc(4 * n, 'out'), heap.alloc(64, 'args')];
  heap.f32.set(Float32Array.from({ length: n }, (_, i) => i), a >>> 2);
  heap.f32.set(Float32Array.from({ length: n }, (_, i) => 2 * i), b >>> 2);
  heap.i32.set([a, b, n, out], args >>> 2);
  const sum = () => Array.from(heap.f32.subarray(out >>> 2, (out >>> 2) + n));
  const want = Array.from({ length: n }, (_, i) => 3 * i);
  try {
    const cases: [number, boolean, number[]][] = [
      [2, false, [1, 0, 0]], // main + worker 1
      [3, false, [1, 1, 0]],
      [1, false, [0, 0, 0]], // main alone: nobody woken
      [99, false, [1, 1, 1]], // capped at the pool
      [2, true, [1, 1, 0]], // background: the kernel on workers 1 and 2 while the main thread works
    ];
    for (const [threads, background, woken] of cases) {
      heap.f32.fill(-1, out >>> 2, (out >>> 2) + n);
      const before = wakes(pool);
      let units = 3;
      pool.run(k, args, true, background ? () => units-- > 0 : null, threads);
      assert.equal(sum(), want, `${threads} threads${background ? ', background' : ''}`);
      assert.equal(wakes(pool).map((w, i) => w - before[i]), woken, `${threads} threads${background ? ', background' : ''}: workers woken`);
    }
  } finally {
    await pool.close();
  }
});

test.run();
