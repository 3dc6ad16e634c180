import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { layerOfWeight, layerWeightGroups } from '../src/index.js';
import { Rng } from '../src/sampling/rng.js';
import { memoryWeightStream, memoryWeights, tinyLlama } from '../src/testing.js';

test('layerOfWeight reads the layer of each Hugging Face naming scheme', () => {
  assert.is(layerOfWeight('model.layers.12.self_attn.q_proj.weight'), 12);
  assert.is(layerOfWeight('transformer.h.3.attn.c_attn.weight'), 3);
  assert.is(layerOfWeight('gpt_neox.layers.0.mlp.dense_h_to_4h.bias'), 0);
  assert.is(layerOfWeight('model.decoder.layers.7.fc1.weight'), 7);
  assert.is(layerOfWeight('model.embed_tokens.weight'), null);
  assert.is(layerOfWeight('lm_head.weight'), null);
});

test('layerWeightGroups: one group per layer, in step order, covering every layer weight once', () => {
  const { graph } = tinyLlama(Rng.fromSeed(1));
  const groups = layerWeightGroups(graph);
  assert.ok(groups.length >= 2);
  assert.equal(groups.map((g) => g.layer), groups.map((_, i) => i));
  const all = groups.flatMap((g) => g.names);
  assert.is(new Set(all).size, all.length);
  const layered = [...graph.weights.keys()].filter((n) => layerOfWeight(n) !== null);
  assert.equal([...all].sort(), layered.sort());
});

test('memoryWeightStream: resident excludes streamed weights; acquire/release are checked', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(2));
  const s = memoryWeightStream(graph, memoryWeights(tensors), { prefetch: 2 });
  const streamed = new Set(s.groups.flat());
  assert.ok(s.resident.names().every((n) => !streamed.has(n)));
  assert.throws(() => s.resident.get(s.groups[0][0]), /streamed/);
  const got = await s.acquire(0);
  assert.equal(got.map((w) => w.name), s.groups[0]);
  let twice = false;
  await s.acquire(0).catch(() => (twice = true));
  assert.ok(twice, 'a second acquire of a held group is refused');
  s.release(0);
  assert.throws(() => s.release(0), /not held/);
});

test.run();
