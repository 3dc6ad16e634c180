// The reference backend with a WeightStream: streamed weights are not loaded at compile time, groups are
// acquired in order (at most prefetch ahead, each once) and released, and the logits are bit-identical.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Rng, type Program } from '@zinfer/core';
import { memoryWeights, memoryWeightStream, range, stepBatch, tinyLlama, TINY_LLAMA } from '@zinfer/core/testing';
import { referenceBackend } from '../src/reference.js';

const KV = { numBlocks: 4, blockSize: 16 };

async function steps(program: Program): Promise<Float32Array[]> {
  const prompt = range(6, 2);
  return [
    await program.run(stepBatch([{ tokens: prompt, cached: 0, blocks: [0] }], KV.blockSize, 'all')),
    await program.run(stepBatch([{ tokens: [4], cached: prompt.length, blocks: [0] }], KV.blockSize)),
  ];
}

for (const prefetch of [0, 1, 3]) {
  test(`reference streaming, prefetch ${prefetch}: same logits, groups acquired in order and released`, async () => {
    const { graph, tensors } = tinyLlama(Rng.fromSeed(21), { ...TINY_LLAMA, numLayers: 5 }, 'bf16');
    const backend = referenceBackend();
    assert.ok(backend.streaming);
    const want = await steps(await backend.compile(graph, memoryWeights(tensors), { kvCache: KV }));
    const stream = memoryWeightStream(graph, memoryWeights(tensors), { prefetch, delayMs: 1 });
    const got = await steps(await backend.compile(graph, stream.resident, { kvCache: KV, stream }));
    got.forEach((v, i) => assert.ok(v.every((x, j) => Object.is(x, want[i][j])), `step ${i}`));
    assert.equal(stream.acquired, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    const computes = stream.events.filter((e) => e.kind === 'compute');
    assert.equal(computes.map((e) => e.group), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    if (prefetch > 0) {
      const fetch1 = stream.events.find((e) => e.kind === 'fetch' && e.group === 1)!;
      assert.ok(fetch1.start < computes[0].end, 'group 1 is fetched while group 0 computes');
    }
  });
}

test('a failing acquire fails the step and releases what the step held', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(22), { ...TINY_LLAMA, numLayers: 3 });
  const stream = memoryWeightStream(graph, memoryWeights(tensors), { prefetch: 1 });
  const acquire = stream.acquire.bind(stream);
  let fail = true;
  stream.acquire = (g) => (g === 2 && fail ? Promise.reject(new Error('tier down')) : acquire(g));
  const program = await referenceBackend().compile(graph, stream.resident, { kvCache: KV, stream });
  const err = await steps(program).then(() => null, (e: Error) => e);
  assert.match(err!.message, 'tier down');
  fail = false;
  assert.is((await steps(program)).length, 2, 'the next steps acquire every group again');
});

test.run();
