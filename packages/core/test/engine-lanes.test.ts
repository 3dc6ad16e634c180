// Step lanes: a program that overlaps steps (Program.concurrentSteps, a pipeline's stages) gets that many
// steps in flight from an engine stepping on its own, each over its own sequences; tokens stay the plain
// run's, and no KV block is shared by two steps in flight (a sequence finished or aborted mid-step keeps
// its blocks until its step is back).
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine } from '../src/index.js';
import { countingBackend } from './helpers/counting-backend.js';

const MODEL = join(import.meta.dirname, '../../../fixtures/models/llama3'); // vocab 384, eos 0
const VOCAB = 384;
const expected = (last: number, n: number) => Array.from({ length: n }, (_, i) => (last + 1 + i) % VOCAB);

test('concurrentSteps 2: two steps in flight on disjoint sequences, every sequence gets the plain run\'s tokens', async () => {
  const backend = countingBackend({ concurrentSteps: 2, delayMs: 5 });
  const e = await createEngine({ model: MODEL, backend, limits: { maxSequences: 8 } });
  const prompts = [[5, 6], [40], [70, 71, 72], [100], [130, 131], [160]];
  const results = await Promise.all(prompts.map((p, i) => e.generate({ inputIds: p, maxTokens: 6 + i, temperature: 0, ignoreEos: true }).result));
  results.forEach((r, i) => assert.equal(r.tokens, expected(prompts[i].at(-1)!, 6 + i), `request ${i}`));
  assert.is(backend.maxInFlight, 2, 'the lanes overlapped');
  assert.ok(backend.concurrent.every((c) => c === 2), 'each step tells the program that 2 are in flight');
  assert.equal(backend.sharedBlocks, [], 'no block in two steps at once');
  // Each step holds one lane's sequences: none appears in two steps that overlapped, and the lanes split the work.
  const sizes = backend.batches.map((b) => b.sequences.length);
  assert.ok(Math.max(...sizes) <= 3, `steps of at most half the sequences: ${sizes.join(' ')}`);
  assert.is(e.kvBlocks.free, e.kvBlocks.total);
  await e.close();
});

test('a request aborted or finished while its lane\'s step runs keeps its blocks until the step is back; new requests reuse them after', async () => {
  const backend = countingBackend({ concurrentSteps: 2, delayMs: 10 });
  const e = await createEngine({ model: MODEL, backend, limits: { maxSequences: 4, kvCacheBytes: 64 * 2 ** 10 } });
  const ctl = new AbortController();
  const a = e.generate({ inputIds: [10], maxTokens: 50, temperature: 0, ignoreEos: true, signal: ctl.signal });
  const b = e.generate({ inputIds: [20], maxTokens: 3, temperature: 0, ignoreEos: true });
  setTimeout(() => ctl.abort(), 25); // mid-step
  const later = new Promise<number[]>((resolve) => setTimeout(() => resolve(e.generate({ inputIds: [30], maxTokens: 4, temperature: 0, ignoreEos: true }).result.then((r) => r.tokens)), 30));
  assert.is((await a.result).finishReason, 'abort');
  assert.equal((await b.result).tokens, expected(20, 3));
  assert.equal(await later, expected(30, 4));
  assert.equal(backend.sharedBlocks, []);
  assert.is(e.kvBlocks.free, e.kvBlocks.total);
  await e.close();
});

test('stepping by hand (autoStep off) keeps one step over every sequence, whatever the program overlaps', async () => {
  const backend = countingBackend({ concurrentSteps: 4, delayMs: 1 });
  const e = await createEngine({ model: MODEL, backend, autoStep: false });
  const s = [e.generate({ inputIds: [1], maxTokens: 2, temperature: 0 }), e.generate({ inputIds: [2], maxTokens: 2, temperature: 0 })];
  await e.step();
  await e.step();
  assert.equal(backend.batches.map((b) => b.sequences.length), [2, 2]);
  assert.equal(backend.concurrent, [undefined, undefined]);
  assert.equal((await s[1].result).tokens, [3, 4]);
  await e.close();
});

test.run();
