// The cooperative fetch (ZeRO-Inference on N ranks): each data-parallel rank keeps 1/N of every streamed
// layer and an all-gather assembles it. Tokens (greedy and seeded sampling, several sequences spread over
// the ranks) and prompt logits are bit-identical to the resident single-rank run.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, Rng, type GenerationResult, type Program, type KernelBackend, type OffloadPlacement, type ParallelStrategy, type WeightOffload } from '@zinfer/core';
import { cpuBackend } from '@zinfer/kernels/cpu';
import { referenceBackend } from '@zinfer/kernels/reference';
import { memoryWeights, range, stepBatch, tinyLlama, TINY_LLAMA } from '@zinfer/core/testing';
import { dataParallel, type DataParallelProgram } from '@zinfer/parallel';
import { weightOffload, type WeightPlacement } from '../src/index.js';
import { inputIds, MODELS } from './helpers.js';

interface Run {
  results: GenerationResult[];
  placements: WeightPlacement[];
}

/** Records each rank's placement (the engine keeps them inside the data-parallel program). */
function spy(offload: WeightOffload, into: OffloadPlacement[]): WeightOffload {
  return { ...offload, place: async (args) => { const p = await offload.place(args); into.push(p); return p; } };
}

/** Three sequences at once (greedy with prompt logits, seeded sampling, greedy on a shorter prompt). */
async function run(model: string, backend: KernelBackend, offload?: WeightOffload, parallel?: ParallelStrategy): Promise<Run> {
  const placements: OffloadPlacement[] = [];
  const e = await createEngine({ model: join(MODELS, model), backend, limits: { maxSequences: 4, kvCacheBytes: 2 ** 21 }, ...(offload ? { offload: spy(offload, placements) } : {}), ...(parallel ? { parallel } : {}) });
  try {
    const ids = inputIds(model);
    const results = await Promise.all([
      e.generate({ inputIds: ids, maxTokens: 6, temperature: 0, promptLogits: true }).result,
      e.generate({ inputIds: ids, maxTokens: 6, temperature: 0.9, seed: 7 }).result,
      e.generate({ inputIds: ids.slice(0, 3), maxTokens: 4, temperature: 0 }).result,
    ]);
    return { results, placements: placements as WeightPlacement[] };
  } finally {
    await e.close();
  }
}

function assertSame(got: Run, want: Run, what: string): void {
  got.results.forEach((r, i) => assert.equal(r.tokens, want.results[i].tokens, `${what}: tokens of sequence ${i}`));
  const a = got.results[0].promptLogits!;
  const b = want.results[0].promptLogits!;
  assert.is(a.length, b.length);
  a.forEach((row, i) => assert.ok(row.every((x, j) => Object.is(x, b[i][j])), `${what}: prompt logits row ${i} differ`));
}

const baseline = new Map<string, Run>();
const CASES = [
  { name: 'reference', make: referenceBackend, prefetches: [0, 1, 3] },
  { name: 'cpu', make: () => cpuBackend({ threads: 2 }), prefetches: [1] },
];

for (const { name, make, prefetches } of CASES) {
  for (const model of ['llama3', 'gpt2']) {
    test(`${name} ${model}: resident single-rank baseline`, async () => {
      baseline.set(`${name}/${model}`, await run(model, make()));
    });
    for (const size of [2, 4]) {
      for (const tier of ['host', 'disk'] as const) {
        for (const prefetch of prefetches) {
          test(`${name} ${model}: ${size} ranks, ${tier} tier, prefetch ${prefetch}, each fetching 1/${size} = resident`, async () => {
            const r = await run(model, make(), weightOffload({ tier, prefetch }), dataParallel({ size }));
            assertSame(r, baseline.get(`${name}/${model}`)!, `${size} ranks ${tier} prefetch ${prefetch}`);
            assert.is(r.placements.length, size);
            r.placements.forEach((p, rank) => {
              assert.match(p.summary[2], `fetch: rank ${rank} of ${size} keeps 1/${size} of each streamed layer`);
              assert.ok(p.timeline().some((e) => e.kind === 'fetch'), `rank ${rank} fetched`);
            });
          });
        }
      }
    }
  }
}

test('8 layers, 2 and 4 ranks, device budget: each rank keeps the leading layers, streams 1/N of the rest, same logits', async () => {
  const KV = { numBlocks: 4, blockSize: 16 };
  const { graph, tensors } = tinyLlama(Rng.fromSeed(11), { ...TINY_LLAMA, numLayers: 8 }, 'bf16');
  const backend = referenceBackend();
  const steps = async (program: Program) => [
    await program.run(stepBatch([{ tokens: range(7, 3), cached: 0, blocks: [0] }], KV.blockSize, 'all')),
    await program.run(stepBatch([{ tokens: [9], cached: 7, blocks: [0] }], KV.blockSize)),
  ];
  const want = await steps(await backend.compile(graph, memoryWeights(tensors), { kvCache: KV }));
  const layerBytes = [...tensors].filter(([n]) => n.startsWith('model.layers.0.')).reduce((a, [, t]) => a + t.data.byteLength, 0);
  const nonLayer = [...tensors].filter(([n]) => !n.startsWith('model.layers.')).reduce((a, [, t]) => a + t.data.byteLength, 0);
  for (const size of [2, 4]) {
    const strategy = dataParallel({ size });
    const offload = weightOffload({ tier: 'host', prefetch: 1, deviceMemory: nonLayer + 4 * layerBytes + 10 });
    const program = (await strategy.launch({ plan: strategy.plan(graph, []), backend, model: { dir: '' }, weights: memoryWeights(tensors), kvCache: KV, offload })) as DataParallelProgram;
    try {
      const got = await steps(program);
      got.forEach((g, i) => assert.ok(g.every((x, j) => Object.is(x, want[i][j])), `${size} ranks: step ${i} logits`));
      for (const p of program.placements as WeightPlacement[]) {
        assert.is(p.plan.resident, 2);
        assert.equal(p.streamedLayers, [2, 3, 4, 5, 6, 7]);
      }
    } finally {
      await program.dispose();
    }
  }
});

for (const [name, make, size, tier, prefetch] of [['cpu', () => cpuBackend({ threads: 1 }), 2, 'host', 1], ['cpu', () => cpuBackend({ threads: 1 }), 2, 'disk', 3], ['reference', referenceBackend, 4, 'host', 0]] as const) {
  test(`${name} llama3: ${size} worker-thread ranks, ${tier} tier, prefetch ${prefetch}: each re-creates the offload and fetches 1/${size}, = resident`, async () => {
    const e = await createEngine({ model: join(MODELS, 'llama3'), backend: make(), limits: { maxSequences: 4, kvCacheBytes: 2 ** 21 }, offload: weightOffload({ tier, prefetch }), parallel: dataParallel({ size, ranks: 'workers' }) });
    try {
      assert.ok(e.offload!.summary.some((l) => l.startsWith(`fetch: rank ${size - 1} of ${size}`)), 'every rank placed with its shard');
      const ids = inputIds('llama3');
      const results = await Promise.all([
        e.generate({ inputIds: ids, maxTokens: 6, temperature: 0, promptLogits: true }).result,
        e.generate({ inputIds: ids, maxTokens: 6, temperature: 0.9, seed: 7 }).result,
        e.generate({ inputIds: ids.slice(0, 3), maxTokens: 4, temperature: 0 }).result,
      ]);
      assertSame({ results, placements: [] }, baseline.get(`${name}/llama3`)!, `${size} worker ranks`);
    } finally {
      await e.close();
    }
  });
}

test('greedy steps through runArgmax, sampled steps through runSample (inline and worker ranks): the resident run\'s tokens, rows in step order', async () => {
  const { cpuBackend: make } = await import('@zinfer/kernels/cpu');
  const want = baseline.get('cpu/gpt2')!.results;
  const ids = inputIds('gpt2');
  const greedyLong = { inputIds: ids, maxTokens: 6, temperature: 0 };
  const greedyShort = { inputIds: ids.slice(0, 3), maxTokens: 4, temperature: 0 };
  const seeded = { inputIds: ids, maxTokens: 6, temperature: 0.9, seed: 7 };
  // No prompt logits: greedy-only steps go through runArgmax, the others through runSample (greedy rows too).
  const cases = [
    { requests: [greedyLong, greedyShort], want: [want[0], want[2]] },
    { requests: [seeded, greedyShort], want: [want[1], want[2]] },
  ];
  for (const ranks of ['inline', 'workers'] as const) {
    for (const c of cases) {
      const e = await createEngine({ model: join(MODELS, 'gpt2'), backend: make({ threads: 1 }), limits: { maxSequences: 4, kvCacheBytes: 2 ** 21 }, offload: weightOffload({ tier: 'host' }), parallel: dataParallel({ size: 2, ranks }) });
      try {
        const got = await Promise.all(c.requests.map((r) => e.generate(r).result));
        got.forEach((g, i) => assert.equal(g.tokens, c.want[i].tokens, `${ranks}: sequence ${i}`));
      } finally {
        await e.close();
      }
    }
  }
});

test('data parallel without offload: every rank holds the weights, identical output', async () => {
  const r = await run('gpt2', referenceBackend(), undefined, dataParallel({ size: 2 }));
  assertSame(r, baseline.get('reference/gpt2')!, 'plain data parallel');
});

test.run();
