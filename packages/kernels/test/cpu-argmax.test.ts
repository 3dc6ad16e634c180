// The cpu program's greedy path (Program.runArgmax, used by the engine when every row of a step is
// greedy): the same ids as the greedy Sampler over run()'s logits, on a tiny Llama's prefill and batched
// decode steps, and on crafted rows (NaN, ±Infinity, ties, nothing finite).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_SAMPLING, Rng, Sampler, type Program } from '@zinfer/core';
import { memoryWeights, range, stepBatch, tinyLlama } from '@zinfer/core/testing';
import { cpuBackend } from '../src/cpu.js';
import { argmaxRows } from '../src/cpu/argmax-rows.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

const greedy = (vocab: number) => new Sampler({ ...DEFAULT_SAMPLING, temperature: 0 }, vocab);

test('argmaxRows picks what the greedy sampler picks: NaN as -Infinity, lowest id on ties, 0 when nothing is finite', () => {
  const { NaN: N } = Number;
  const rows = [
    [N, 1, 3, 3, -2], [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity], [N, N, N, N, N], [1, Infinity, 2, Infinity, N],
    [-5, -4, -4, -6, -7], [7, 7, 7, 7, 7], [-Infinity, N, -Infinity, -1e30, N],
  ];
  const flat = Float32Array.from([0, 0, 0, ...rows.flat()]); // an offset, as rows sit in the heap
  const got = argmaxRows(flat, 3, rows.length, 5);
  rows.forEach((row, r) => assert.is(got[r], greedy(5).sample(Float32Array.from(row), []), `row ${r}: ${row.join(', ')}`));
});

test('runArgmax equals the greedy pick of run() on prefill and batched decode steps, 1 and 2 threads', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(41), { vocabSize: 61, hiddenSize: 67, numHeads: 4, numKeyValueHeads: 2, headDim: 18, intermediateSize: 130, numLayers: 2, slidingWindow: null }, 'bf16');
  const steps = [
    stepBatch([{ tokens: range(20, 1), cached: 0, blocks: [0, 1] }, { tokens: range(9, 3), cached: 0, blocks: [2] }], 16, 'last'),
    stepBatch([{ tokens: [5], cached: 20, blocks: [0, 1] }, { tokens: [7], cached: 9, blocks: [2] }], 16, 'last'),
  ];
  for (const threads of [1, 2]) {
    const p: Program = await cpuBackend({ threads, minParallelWork: 0 }).compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 4, blockSize: 16 } });
    const q: Program = await cpuBackend({ threads, minParallelWork: 0 }).compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 4, blockSize: 16 } });
    try {
      for (const [i, s] of steps.entries()) {
        const logits = await p.run(s);
        const ids = await q.runArgmax!(s);
        const want = Array.from({ length: s.selectedRows.length }, (_, r) => greedy(61).sample(logits.subarray(r * 61, (r + 1) * 61), []));
        assert.equal(Array.from(ids), want, `${threads} thread(s), step ${i}`);
      }
    } finally {
      await p.dispose();
      await q.dispose();
    }
  }
});

test.run();
