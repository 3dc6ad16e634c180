// The cpu backend's runSample kernel (asm/sample.ts through PoolRowSampler) against core's TokenFilter,
// the host's pick, on random rows: every processor alone and together (temperature, top-k with ties,
// top-p, min-p, repetition penalty), masked (-Infinity and NaN) logits, all-masked and +Infinity rows,
// odd vocab sizes, on one thread and split over a pool of three. The ids must be the same.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Rng, TokenFilter, type SampleRow } from '@zinfer/core';
import { WasmHeap } from '../src/cpu/heap.js';
import { PoolRowSampler } from '../src/cpu/sample-rows.js';
import { ThreadPool } from '../src/cpu/thread-pool.js';
import { loadKernelModule } from '../src/cpu/wasm-module.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

/** A random row's settings: each processor on about half the time. */
function randomRow(rng: Rng, width: number): SampleRow {
  const on = () => rng.next() < 0.5;
  const greedy = rng.next() < 0.15;
  const penalty = on() ? 0.5 + 1.5 * rng.next() : 1;
  const penalized = penalty === 1 ? new Int32Array(0) : Int32Array.from(new Set(Array.from({ length: 1 + Math.floor(rng.next() * 12) }, () => Math.floor(rng.next() * width))));
  return {
    temperature: greedy ? 0 : 0.05 + 2 * rng.next(),
    topK: on() ? 1 + Math.floor(rng.next() * Math.min(width, 60)) : 0,
    topP: on() ? 0.05 + 0.95 * rng.next() : 1,
    minP: on() ? 0.2 * rng.next() : 0,
    repetitionPenalty: penalty,
    uniform: greedy ? 0 : rng.next(),
    penalized,
  };
}

/** Logits of one kind: spread, flat with ties (few distinct values), masked here and there, or pathological. */
function randomLogits(rng: Rng, width: number, kind: number): Float32Array {
  const x = new Float32Array(width);
  for (let i = 0; i < width; i++) {
    if (kind === 0) x[i] = (rng.next() * 2 - 1) * 8;
    else if (kind === 1) x[i] = Math.floor(rng.next() * 4); // many ties
    else x[i] = rng.next() < 0.3 ? (rng.next() < 0.5 ? -Infinity : NaN) : (rng.next() * 2 - 1) * 3;
  }
  if (kind === 3) x.fill(-Infinity); // nothing finite: token 0
  if (kind === 4) x[Math.floor(rng.next() * width)] = Infinity;
  return x;
}

test('k_sample picks the ids TokenFilter picks (every processor, ties, masks; 1 and 3 threads; odd vocab sizes)', async () => {
  const km = await loadKernelModule();
  const heap = new WasmHeap();
  const pool = new ThreadPool(km.module, heap.memory, km.names, 3, 3);
  const single = new ThreadPool(km.module, heap.memory, km.names, 1, 1);
  await pool.start();
  const rng = Rng.fromSeed(23);
  const args = heap.alloc(64, 'args');
  let compared = 0;
  try {
    for (const width of [1, 2, 7, 33, 100, 1000, 4099]) {
      const rows = 40;
      const logitsAt = heap.alloc(rows * width * 4, 'logits');
      const filter = new TokenFilter(width);
      const sampleRows = Array.from({ length: rows }, () => randomRow(rng, width));
      const logits = Array.from({ length: rows }, (_, r) => randomLogits(rng, width, r % 5));
      logits.forEach((l, r) => heap.f32.set(l, (logitsAt >>> 2) + r * width));
      const want = Int32Array.from(sampleRows, (row, r) => filter.pick(row, logits[r], row.penalized, row.uniform));
      for (const p of [single, pool]) {
        const got = new PoolRowSampler(p).pick(heap, args, logitsAt >>> 2, sampleRows, width, heap.end);
        assert.equal(Array.from(got), Array.from(want), `width ${width}, ${p.threads} thread(s)`);
        compared += rows;
      }
    }
  } finally {
    await pool.close();
    await single.close();
  }
  assert.is(compared, 7 * 40 * 2);
});

test('a penalized id outside the vocab is refused as TokenFilter refuses it; no row at all gives no ids', async () => {
  const km = await loadKernelModule();
  const heap = new WasmHeap();
  const pool = new ThreadPool(km.module, heap.memory, km.names, 1, 1);
  const args = heap.alloc(64, 'args');
  const at = heap.alloc(4 * 8, 'logits') >>> 2;
  const row: SampleRow = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1.3, uniform: 0.5, penalized: Int32Array.of(2, 8) };
  const sampler = new PoolRowSampler(pool);
  assert.throws(() => sampler.pick(heap, args, at, [row], 8, heap.end), (e: Error) => e instanceof RangeError && /history\[1\] is 8, not a token id in \[0, 8\)/.test(e.message));
  assert.throws(() => new TokenFilter(8).pick(row, new Float32Array(8), row.penalized, 0.5), /history\[1\] is 8/);
  assert.is(sampler.pick(heap, args, at, [], 8, heap.end).length, 0);
  // A top-k far beyond the vocab keeps every token, as TokenFilter does (and does not trap the kernel).
  const logits = Float32Array.of(0.5, 2, -1, 0.25, 1, 3, -2, 0);
  heap.f32.set(logits, at);
  const wide: SampleRow = { ...row, repetitionPenalty: 1, penalized: new Int32Array(0), topK: 2 ** 40, uniform: 0.3 };
  assert.equal(Array.from(sampler.pick(heap, args, at, [wide], 8, heap.end)), [new TokenFilter(8).pick(wide, logits, wide.penalized, wide.uniform)]);
  await pool.close();
});

test.run();
