// Throughput mode: limits.kvCacheBytes 'auto' gives the KV cache the device memory the weights leave
// (the backend's probe less the weights on the device and a reserve), maxSequences 'auto' runs as many
// sequences as it holds at maxContext tokens each, and a decode step can take them all. With offload, the
// placement's device bytes replace the weights' (so the freed memory goes to the cache).
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CapacityError, ConfigError, CONTRACT_VERSION, createEngine, loadModel, type EngineConfig, type OffloadPlacement, type WeightOffload } from '../src/index.js';
import { AUTO_MAX_SEQUENCES, AUTO_RESERVE_BYTES, AUTO_RESERVE_SHARE, graphWeightBytes } from '../src/engine-sizing.js';
import { countingBackend } from './helpers/counting-backend.js';

const MODEL = join(import.meta.dirname, '../../../fixtures/models/llama3'); // 2 layers, 2 KV heads of 16, context 128
const PER_BLOCK = 2 * 2 * 16 * 2 * 16 * 4; // counting backend: K and V, layers, block 16, kvHeads, headDim, f32
const BLOCKS_PER_SEQUENCE = 128 / 16;

function withMemory(bytes: number) {
  const backend = countingBackend();
  backend.probe = async () => ({ device: 'test', description: 'a test device', memoryBytes: bytes });
  return backend;
}

async function weightBytes(): Promise<number> {
  const m = await loadModel(MODEL);
  try {
    return graphWeightBytes(m.graph, m.weights);
  } finally {
    m.weights.close();
  }
}

test('kvCacheBytes auto: the probe\'s memory less the weights and the reserve, in whole blocks (capped by maxSequences × maxContext)', async () => {
  const memory = 2 ** 30;
  const free = memory - (await weightBytes()) - Math.max(AUTO_RESERVE_BYTES, AUTO_RESERVE_SHARE * memory);
  const e = await createEngine({ model: MODEL, backend: withMemory(memory), autoStep: false, limits: { kvCacheBytes: 'auto', maxSequences: 100_000 } });
  assert.is(e.kvBlocks.total, Math.floor(free / PER_BLOCK));
  await e.close();
  const capped = await createEngine({ model: MODEL, backend: withMemory(memory), autoStep: false, limits: { kvCacheBytes: 'auto', maxSequences: 3 } });
  assert.is(capped.kvBlocks.total, 3 * BLOCKS_PER_SEQUENCE, 'no more than 3 sequences of maxContext can use');
  await capped.close();
});

test('maxSequences auto: as many sequences as the cache holds at maxContext each, and one step takes them all', async () => {
  const kvCacheBytes = 40 * BLOCKS_PER_SEQUENCE * PER_BLOCK + 5; // 40 sequences' worth
  const e = await createEngine({ model: MODEL, backend: countingBackend(), autoStep: false, limits: { kvCacheBytes, maxSequences: 'auto', maxBatchTokens: 8 } });
  assert.is(e.kvBlocks.total, 40 * BLOCKS_PER_SEQUENCE);
  const streams = Array.from({ length: 45 }, (_, i) => e.generate({ inputIds: [i + 1], maxTokens: 5, temperature: 0, ignoreEos: true }));
  await e.step();
  assert.is(e.sequences.running, 40, '40 admitted at once; 5 wait');
  assert.is(e.sequences.waiting, 5);
  await e.close();
  for (const s of streams) await s.result.catch(() => {});
  // Without maxBatchTokens set, it rises to take every running sequence in one decode step.
  const wide = await createEngine({ model: MODEL, backend: countingBackend(), autoStep: false, limits: { kvCacheBytes: 600 * BLOCKS_PER_SEQUENCE * PER_BLOCK, maxSequences: 'auto' } });
  const many = Array.from({ length: 600 }, (_, i) => wide.generate({ inputIds: [(i % 300) + 1], maxTokens: 2, temperature: 0 }));
  await wide.step(); // prompts (one token each)
  const report = await wide.step(); // every sequence decodes in one step
  assert.is(report.sequences, 600);
  await wide.close();
  for (const s of many) await s.result.catch(() => {});
  assert.ok(AUTO_MAX_SEQUENCES >= 600);
});

test('with offload, the placement\'s device bytes stand for the weights: the freed memory goes to the cache', async () => {
  const memory = 2 ** 30;
  const reserve = Math.max(AUTO_RESERVE_BYTES, AUTO_RESERVE_SHARE * memory);
  const placed: OffloadPlacement = { resident: { names: () => [], get: () => { throw new Error('none'); } }, stream: null, summary: [], deviceBytes: 1000, timeline: () => [], close: async () => {} };
  const offload: WeightOffload = { name: 'test', contractVersion: CONTRACT_VERSION, place: async (args) => ({ ...placed, resident: args.weights }) };
  const backend = Object.assign(withMemory(memory), { streaming: true as const });
  const e = await createEngine({ model: MODEL, backend, autoStep: false, offload, limits: { kvCacheBytes: 'auto', maxSequences: 'auto' } });
  assert.is(e.kvBlocks.total, Math.min(Math.floor((memory - 1000 - reserve) / PER_BLOCK), AUTO_MAX_SEQUENCES * BLOCKS_PER_SEQUENCE));
  await e.close();
});

test('a device too small for the weights and the reserve is a CapacityError naming limits.kvCacheBytes; bad values a ConfigError', async () => {
  try {
    await createEngine({ model: MODEL, backend: withMemory(AUTO_RESERVE_BYTES), limits: { kvCacheBytes: 'auto' } });
    assert.unreachable('expected a CapacityError');
  } catch (e) {
    assert.instance(e, CapacityError);
    assert.is((e as CapacityError).info.field, 'limits.kvCacheBytes');
    assert.match((e as Error).message, 'a test device');
  }
  for (const limits of [{ kvCacheBytes: 'lots' }, { maxSequences: 'all' }, { maxSequences: 0 }]) {
    try {
      await createEngine({ model: MODEL, backend: countingBackend(), limits } as unknown as EngineConfig);
      assert.unreachable(`expected a ConfigError for ${JSON.stringify(limits)}`);
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.match((e as ConfigError).info.field ?? '', /^limits\./);
    }
  }
});

test.run();
