// Partial residency needs more layers than the fixtures have: a random 8-layer Llama, placed with a budget
// that keeps the first layers on the device and streams the rest, computes the same logits as resident.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Rng, type Program } from '@zinfer/core';
import { memoryWeights, range, stepBatch, tinyLlama, TINY_LLAMA } from '@zinfer/core/testing';
import { referenceBackend } from '@zinfer/kernels/reference';
import { weightOffload, type WeightPlacement } from '../src/index.js';

const KV = { numBlocks: 4, blockSize: 16 };

async function twoSteps(program: Program): Promise<Float32Array[]> {
  const prompt = range(7, 3);
  const prefill = await program.run(stepBatch([{ tokens: prompt, cached: 0, blocks: [0] }], KV.blockSize, 'all'));
  const decode = await program.run(stepBatch([{ tokens: [9], cached: prompt.length, blocks: [0] }], KV.blockSize));
  return [prefill, decode];
}

for (const tier of ['host', 'disk'] as const) {
  for (const prefetch of [0, 1, 3]) {
    test(`8 layers, ${tier} tier, prefetch ${prefetch}: leading layers resident, the rest streamed, same logits`, async () => {
      const { graph, tensors } = tinyLlama(Rng.fromSeed(11), { ...TINY_LLAMA, numLayers: 8 }, 'bf16');
      const backend = referenceBackend();
      const want = await twoSteps(await backend.compile(graph, memoryWeights(tensors), { kvCache: KV }));
      const layerBytes = [...tensors].filter(([n]) => n.startsWith('model.layers.0.')).reduce((a, [, t]) => a + t.data.byteLength, 0);
      const nonLayer = [...tensors].filter(([n]) => !n.startsWith('model.layers.')).reduce((a, [, t]) => a + t.data.byteLength, 0);
      const budget = nonLayer + (prefetch + 1) * layerBytes + 2 * layerBytes + 10;
      const p = (await weightOffload({ tier, prefetch, deviceMemory: budget }).place({ graph, weights: memoryWeights(tensors), backend })) as WeightPlacement;
      try {
        assert.is(p.plan.resident, 2);
        assert.equal(p.streamedLayers, [2, 3, 4, 5, 6, 7]);
        assert.ok(p.plan.deviceBytes <= budget);
        const program = await backend.compile(graph, p.resident, { kvCache: KV, stream: p.stream! });
        const got = await twoSteps(program);
        got.forEach((v, i) => assert.ok(v.every((x, j) => Object.is(x, want[i][j])), `step ${i} logits`));
        const computes = p.timeline().filter((e) => e.kind === 'compute');
        assert.equal(computes.map((e) => e.group), [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5], 'each streamed group computes once per step, in order');
      } finally {
        await p.close();
      }
    });
  }
}

test('disk stream: the next group is read while the current one computes', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(12), { ...TINY_LLAMA, numLayers: 6 }, 'f32');
  const backend = referenceBackend();
  const p = (await weightOffload({ tier: 'disk', prefetch: 1 }).place({ graph, weights: memoryWeights(tensors), backend })) as WeightPlacement;
  try {
    await twoSteps(await backend.compile(graph, p.resident, { kvCache: KV, stream: p.stream! }));
    const t = p.timeline();
    const compute0 = t.find((e) => e.kind === 'compute' && e.group === 0)!;
    const fetch1 = t.find((e) => e.kind === 'fetch' && e.group === 1)!;
    assert.ok(fetch1.start < compute0.end, 'group 1 was being read before group 0 finished computing');
    assert.ok(t.filter((e) => e.kind === 'fetch').length >= 12, 'two read buffers for six groups: every step reads every group');
  } finally {
    await p.close();
  }
});

test('disk stream: an acquire beyond the free buffers waits for a release instead of failing', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(12), { ...TINY_LLAMA, numLayers: 4 }, 'f32');
  const p = (await weightOffload({ tier: 'disk', prefetch: 1, buffers: 2 }).place({ graph, weights: memoryWeights(tensors), backend: referenceBackend() })) as WeightPlacement;
  try {
    const s = p.stream!;
    await s.acquire(0);
    await s.acquire(1);
    let third = false;
    const pending = s.acquire(2).then((w) => ((third = true), w));
    await new Promise((r) => setTimeout(r, 20));
    assert.not.ok(third, 'both buffers are held: group 2 waits');
    s.release(0);
    const w = await pending;
    assert.equal(w.map((x) => x.name), s.groups[2]);
    assert.ok(w.every((x) => x.tensor.data.every((v, i) => Object.is(v, tensors.get(x.name)!.data[i]))), 'group 2 read into the freed buffer');
    s.release(1);
    s.release(2);
  } finally {
    await p.close();
  }
});

test.run();
