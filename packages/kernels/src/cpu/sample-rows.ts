// Program.runSample on the cpu backend: the rows of a step are picked by the wasm kernel k_sample
// (asm/sample.ts: core's TokenFilter.pick, step for step) split over the thread pool, reading the logits
// in place in the heap. On the main thread alone a 256-row step of a 4,096-token vocab spent ~20 ms
// sampling, more than the model itself on a many-core machine (BENCHMARKS.md, "Serving load").
import { checkHistory, type SampleRow } from '@zinfer/core';
import { alignUp, type WasmHeap } from './heap.js';
import type { ThreadPool } from './thread-pool.js';

/** f64 parameters a row (k_sample's P_* order). */
const PARAMS = 6;
/** Scratch bytes a thread needs for a vocab of `width`: weights f64, scores f32, ids i32, kept u8. */
export const sampleScratchBytes = (width: number): number => alignUp(17 * width);

export class PoolRowSampler {
  private readonly kernel: number;

  constructor(private readonly pool: ThreadPool) {
    this.kernel = pool.kernel('k_sample');
  }

  /**
   * Each row's token from the logits at float index `at` ([rows.length, width]), with the heap free from
   * byte `free` on (scratch for this call only) and `args` the byte offset of a kernel argument block.
   */
  pick(heap: WasmHeap, args: number, at: number, rows: readonly SampleRow[], width: number, free: number): Int32Array {
    const n = rows.length;
    if (n === 0) return new Int32Array(0);
    let penalized = 0;
    for (const row of rows) {
      if (row.repetitionPenalty === 1) continue;
      checkHistory(row.penalized, width); // as TokenFilter checks them: the kernel trusts these ids
      penalized += row.penalized.length;
    }
    const threads = this.pool.parallel ? Math.min(this.pool.threads, n) : 1;
    const params = alignUp(free);
    const ranges = alignUp(params + n * PARAMS * 8);
    const ids = alignUp(ranges + n * 8);
    const out = alignUp(ids + penalized * 4);
    const scratch = alignUp(out + n * 4);
    const area = sampleScratchBytes(width);
    heap.ensure(scratch + threads * area, `sampling scratch of a ${n}-row step`);
    const f64 = new Float64Array(heap.u8.buffer, params, n * PARAMS);
    const i32 = heap.i32;
    let next = ids >>> 2;
    rows.forEach((row, r) => {
      // top-k of at least the vocab keeps everything, as none; clamped so the kernel's i32 conversion cannot trap.
      f64.set([row.temperature, Math.min(row.topK, width), row.topP, row.minP, row.repetitionPenalty, row.uniform], r * PARAMS);
      const count = row.repetitionPenalty === 1 ? 0 : row.penalized.length;
      i32[(ranges >>> 2) + 2 * r] = next - (ids >>> 2);
      i32[(ranges >>> 2) + 2 * r + 1] = count;
      if (count) i32.set(row.penalized, next);
      next += count;
    });
    i32.set([at * 4, n, width, params, ranges, ids, out, scratch, area], args >>> 2);
    this.pool.run(this.kernel, args, threads > 1);
    return heap.i32.slice(out >>> 2, (out >>> 2) + n);
  }
}
