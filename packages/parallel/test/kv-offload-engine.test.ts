// KV-cache offload through createEngine: several requests at once under pipelineParallel({ stages: 2,
// kvOffload }) with a device cache smaller than their blocks (so blocks really go to host memory and come
// back: the backend counts its saves and loads) give the plain engine's greedy tokens and pp 2's without
// offload, and prompt logits within 1e-4; worker ranks (pp 2 and tp 2 × pp 2, reference backend) and
// inline ranks (cpu backend). A device cache too small for one micro-batch fails the request with an error
// naming parallel.kvOffload.deviceBlocks instead of hanging; so does a bad option, and a backend without
// kvBlocks is named.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, createEngine, type KernelBackend, type ParallelStrategy } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { pipelineParallel, type PipelineParallelOptions } from '../src/index.js';
import { countingBackend, LOADS, SAVES } from './workers/kv-offload-backend.js';

const DIR = join(import.meta.dirname, '../../../fixtures/models/llama2');
const IDS = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')).input_ids as number[];
// Blocks of 4 tokens; after 10 new tokens the four sequences hold 9, 6, 8 and 4 blocks (27 in all). Two
// engine lanes (worker ranks) take sequences 0 + 2 and 1 + 3, so a micro-batch uses at most 17 blocks
// (inline ranks: the decode micro-batches 0 + 1 and 2 + 3, at most 15): 18 device blocks hold any
// micro-batch, never all of them.
const PROMPTS = [IDS, IDS.slice(3, 15), IDS.slice(5), IDS.slice(1, 6)];
const LIMITS = { blockSize: 4, kvCacheBytes: 128 * 1024 };
const MAX_TOKENS = 10;

interface Result {
  tokens: number[][];
  /** Prompt logits per request: one row a prompt position. */
  logits: ArrayLike<number>[][];
}

async function generate(backend: KernelBackend, parallel?: ParallelStrategy, prompts = PROMPTS): Promise<Result> {
  const engine = await createEngine({ model: DIR, backend, parallel, limits: LIMITS });
  try {
    const rs = await Promise.all(prompts.map((p) => engine.generate({ inputIds: p, maxTokens: MAX_TOKENS, temperature: 0, ignoreEos: true, promptLogits: true }).result));
    return { tokens: rs.map((r) => r.tokens), logits: rs.map((r) => r.promptLogits!) };
  } finally {
    await engine.close();
  }
}

let plain: Result | null = null;
/** Each prompt alone on one device, no parallelism. */
async function plainRun(): Promise<Result> {
  if (plain) return plain;
  const alone = await Promise.all(PROMPTS.map((p) => generate(referenceBackend(), undefined, [p])));
  return (plain = { tokens: alone.map((r) => r.tokens[0]), logits: alone.map((r) => r.logits[0]) });
}

function assertSame(r: Result, base: Result, what: string): void {
  r.tokens.forEach((t, i) => assert.equal(t, base.tokens[i], `${what}: tokens of prompt ${i}`));
  let d = 0;
  r.logits.forEach((rows, i) => rows.forEach((row, p) => Array.from(row).forEach((x, j) => (d = Math.max(d, Math.abs(x - base.logits[i][p][j]))))));
  assert.ok(d <= 1e-4, `${what}: prompt logits differ by ${d}`);
}

function counting(inner: 'reference' | 'cpu') {
  const counts = new SharedArrayBuffer(8);
  return { backend: countingBackend({ inner, counts }), moved: () => ({ loads: Atomics.load(new Int32Array(counts), LOADS), saves: Atomics.load(new Int32Array(counts), SAVES) }) };
}

const CASES: [string, 'reference' | 'cpu', Omit<PipelineParallelOptions, 'kvOffload'>][] = [
  ['worker ranks, pp 2', 'reference', { stages: 2 }],
  ['worker ranks, tp 2 × pp 2', 'reference', { stages: 2, tensorSize: 2 }],
  ['inline ranks, pp 2, cpu backend', 'cpu', { stages: 2, ranks: 'inline' }],
];

for (const [name, inner, opts] of CASES) {
  test(`${name}: 18 device blocks for 27 blocks of KV give the plain run's tokens and logits, with blocks saved and loaded`, async () => {
    const base = await plainRun();
    const { backend, moved } = counting(inner);
    const r = await generate(backend, pipelineParallel({ ...opts, kvOffload: { deviceBlocks: 18 } }));
    const { loads, saves } = moved();
    assert.ok(saves > 0 && loads > 0, `blocks moved: ${saves} saved, ${loads} loaded`);
    assertSame(r, base, name);
  });
}

test('block ids handed to later requests (two sequences at a time, so freed ids come back) keep the plain tokens', async () => {
  const base = await plainRun();
  const { backend, moved } = counting('reference');
  const engine = await createEngine({ model: DIR, backend, parallel: pipelineParallel({ stages: 2, kvOffload: { deviceBlocks: 12 } }), limits: { ...LIMITS, maxSequences: 2 } });
  try {
    const rs = await Promise.all([...PROMPTS, ...PROMPTS].map((p) => engine.generate({ inputIds: p, maxTokens: MAX_TOKENS, temperature: 0, ignoreEos: true }).result));
    rs.forEach((r, i) => assert.equal(r.tokens, base.tokens[i % PROMPTS.length], `request ${i}`));
  } finally {
    await engine.close();
  }
  assert.ok(moved().saves > 0, 'blocks moved');
});

test('pp 2 without offload gives the same tokens as with it (worker ranks)', async () => {
  const without = await generate(referenceBackend(), pipelineParallel({ stages: 2 }));
  const { backend } = counting('reference');
  const withOffload = await generate(backend, pipelineParallel({ stages: 2, kvOffload: { deviceBlocks: 18 } }));
  assert.equal(withOffload.tokens, without.tokens);
});

for (const ranks of ['inline', 'workers'] as const) {
  test(`${ranks} ranks: a device cache smaller than one micro-batch fails the request with an error naming parallel.kvOffload.deviceBlocks`, async () => {
    const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel: pipelineParallel({ stages: 2, ranks, kvOffload: { deviceBlocks: 3 } }), limits: LIMITS });
    try {
      const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('hung')), 20_000).unref());
      const err = await Promise.race([engine.generate({ inputIds: IDS, maxTokens: 4, temperature: 0 }).result.then(() => null, (e: Error) => e), timeout]);
      assert.ok(err instanceof Error, 'the request fails');
      assert.match(err.message, /parallel\.kvOffload\.deviceBlocks/);
      assert.match(err.message, /uses 6 KV-cache blocks, more than the 3/);
      if (ranks === 'inline') assert.instance(err, ConfigError);
    } finally {
      await engine.close();
    }
  });
}

test('kvOffload is checked: deviceBlocks a positive integer; a backend without kvBlocks is named', async () => {
  for (const deviceBlocks of [0, -2, 1.5, Number.NaN]) {
    try {
      pipelineParallel({ stages: 2, kvOffload: { deviceBlocks } });
      assert.unreachable(`deviceBlocks ${deviceBlocks}`);
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, 'parallel.kvOffload.deviceBlocks');
    }
  }
  const backend = countingBackend({ inner: 'reference', counts: new SharedArrayBuffer(8), noTransfer: true });
  try {
    await createEngine({ model: DIR, backend, parallel: pipelineParallel({ stages: 2, ranks: 'inline', kvOffload: { deviceBlocks: 8 } }), limits: LIMITS });
    assert.unreachable('no kvBlocks');
  } catch (e) {
    assert.instance(e, ConfigError);
    assert.is((e as ConfigError).info.field, 'parallel.kvOffload');
    assert.match((e as Error).message, /backend counting-reference cannot move KV-cache blocks/);
  }
});

test.run();
