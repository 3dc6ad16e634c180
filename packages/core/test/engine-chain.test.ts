// Chained greedy decode (Program.runArgmaxSteps, EngineLimits.decodeSteps): a program that chains steps
// gets runs of greedy decode steps in one call; the sequences get the plain run's tokens, stop where they
// would have stopped, and never go past the KV blocks they hold.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, chainArgmaxSteps, ConfigError, createEngine, nextDecodeStep, type StepBatch } from '../src/index.js';
import { countingBackend } from './helpers/counting-backend.js';

const MODEL = join(import.meta.dirname, '../../../fixtures/models/llama3'); // vocab 384, eos 0
const VOCAB = 384;
const expected = (last: number, n: number) => Array.from({ length: n }, (_, i) => (last + 1 + i) % VOCAB);
/** What each step computed, without the arrays' identities. */
const layout = (b: StepBatch) => ({ ids: [...b.tokenIds], positions: [...b.positions], slots: [...b.slots], context: b.sequences.map((s) => s.contextLength) });

test('one request: chained steps compute exactly the plain run\'s steps, in runs of decodeSteps and no further than max tokens', async () => {
  const plain = countingBackend({ argmax: true });
  const chained = countingBackend({ chain: true });
  const results = [];
  for (const backend of [plain, chained]) {
    const e = await createEngine({ model: MODEL, backend, limits: { blockSize: 4, decodeSteps: 4 } });
    results.push(await e.generate({ inputIds: [7, 8, 9], maxTokens: 11, temperature: 0, ignoreEos: true }).result);
    assert.is(e.kvBlocks.free, e.kvBlocks.total);
    await e.close();
  }
  assert.equal(results[1].tokens, expected(9, 11));
  assert.equal(results[1].tokens, results[0].tokens);
  assert.equal(chained.batches.map(layout), plain.batches.map(layout), 'same ids, positions, slots and contexts, step by step');
  // The prompt step alone, then decode: 10 more tokens as 4 + 4 + 2 (the last run stops at max tokens).
  assert.equal(chained.chainCalls, [4, 4, 2]);
});

test('engine.step() reports the steps a call ran: 1 for a prompt step, the run\'s length for a chained one', async () => {
  const backend = countingBackend({ chain: true });
  const e = await createEngine({ model: MODEL, backend, autoStep: false, limits: { decodeSteps: 3 } });
  const gen = e.generate({ inputIds: [1, 2], maxTokens: 6, temperature: 0, ignoreEos: true });
  const reports = [];
  for (let r = await e.step(); r.tokens > 0; r = await e.step()) reports.push(r);
  assert.equal(reports.map((r) => [r.tokens, r.steps]), [[2, 1], [3, 3], [2, 2]]);
  assert.equal((await gen.result).tokens, expected(2, 6));
  await e.close();
});

test('several requests: each gets its tokens; a run is as long as the sequence with the fewest tokens left', async () => {
  const backend = countingBackend({ chain: true });
  const e = await createEngine({ model: MODEL, backend, limits: { decodeSteps: 8 } });
  const prompts = [[5, 6], [40], [70, 71, 72], [100]];
  const runs = await Promise.all(prompts.map((p, i) => e.generate({ inputIds: p, maxTokens: 3 + 5 * i, temperature: 0, ignoreEos: true }).result));
  runs.forEach((r, i) => assert.equal(r.tokens, expected(prompts[i].at(-1)!, 3 + 5 * i), `request ${i}`));
  assert.ok(backend.chainCalls.length > 0 && backend.chainCalls.every((k) => k >= 2 && k <= 8), backend.chainCalls.join(' '));
  assert.is(e.kvBlocks.free, e.kvBlocks.total);
  await e.close();
});

test('a stop token inside a run ends the request there; the tokens computed after it are dropped', async () => {
  const backend = countingBackend({ chain: true });
  const e = await createEngine({ model: MODEL, backend, limits: { decodeSteps: 8 } });
  const stopped = e.generate({ inputIds: [20], maxTokens: 30, temperature: 0, ignoreEos: true, stopTokenIds: [24] });
  const other = e.generate({ inputIds: [50], maxTokens: 12, temperature: 0, ignoreEos: true });
  const r = await stopped.result;
  assert.is(r.finishReason, 'stop');
  assert.equal(r.tokens, [21, 22, 23, 24]);
  assert.equal((await other.result).tokens, expected(50, 12));
  assert.is(e.kvBlocks.free, e.kvBlocks.total);
  await e.close();
});

test('streamed tokens arrive one event each, in order, from chained runs', async () => {
  const backend = countingBackend({ chain: true });
  const e = await createEngine({ model: MODEL, backend });
  const seen: number[] = [];
  for await (const ev of e.generate({ inputIds: [3], maxTokens: 9, temperature: 0, ignoreEos: true })) seen.push(ev.token);
  assert.equal(seen, expected(3, 9));
  assert.ok(backend.chainCalls.length >= 2);
  await e.close();
});

test('no chaining: decodeSteps 1, sampled rows without runSampleSteps, and programs without runArgmaxSteps', async () => {
  const off = countingBackend({ chain: true });
  const e = await createEngine({ model: MODEL, backend: off, limits: { decodeSteps: 1 } });
  assert.equal((await e.generate({ inputIds: [9], maxTokens: 6, temperature: 0, ignoreEos: true }).result).tokens, expected(9, 6));
  assert.equal(off.chainCalls, []);
  await e.close();
  const sampled = countingBackend({ chain: true });
  const s = await createEngine({ model: MODEL, backend: sampled });
  await s.generate({ inputIds: [9], maxTokens: 6, temperature: 0.8, seed: 3, ignoreEos: true }).result;
  assert.equal([sampled.chainCalls, sampled.sampleChainCalls], [[], []], 'a sampled row chains only through runSampleSteps');
  await s.close();
});

test('sampled rows chain through runSampleSteps: seeded requests get the tokens of one step a call; a repetition penalty does not chain', async () => {
  const reqs = [
    { inputIds: [11, 12], maxTokens: 9, temperature: 0.9, topK: 40, seed: 5, ignoreEos: true },
    { inputIds: [30], maxTokens: 7, temperature: 1.2, topP: 0.8, seed: 6, ignoreEos: true },
    { inputIds: [50, 51, 52], maxTokens: 8, temperature: 0, ignoreEos: true },
  ];
  const runs = [];
  for (const decodeSteps of [1, 4]) {
    const backend = countingBackend({ chain: true, sample: true });
    const e = await createEngine({ model: MODEL, backend, limits: { decodeSteps } });
    runs.push({ tokens: (await Promise.all(reqs.map((r) => e.generate(r).result))).map((r) => r.tokens), calls: backend.sampleChainCalls });
    assert.is(e.kvBlocks.free, e.kvBlocks.total);
    await e.close();
  }
  assert.equal(runs[1].tokens, runs[0].tokens, 'the same tokens, chained or not');
  assert.equal(runs[0].calls, []);
  assert.ok(runs[1].calls.length > 0 && runs[1].calls.every((k) => k >= 2 && k <= 4), runs[1].calls.join(' '));
  const penalized = countingBackend({ chain: true, sample: true });
  const p = await createEngine({ model: MODEL, backend: penalized });
  await p.generate({ inputIds: [9], maxTokens: 6, temperature: 0.8, repetitionPenalty: 1.2, seed: 3, ignoreEos: true }).result;
  assert.equal(penalized.sampleChainCalls, [], 'the penalized set changes with each token');
  await p.close();
});

test('an abort during a run ends the request with the tokens before it and frees its blocks', async () => {
  const backend = countingBackend({ chain: true });
  const e = await createEngine({ model: MODEL, backend, limits: { decodeSteps: 4 } });
  const ctl = new AbortController();
  const seen: number[] = [];
  const stream = e.generate({ inputIds: [60], maxTokens: 40, temperature: 0, ignoreEos: true, signal: ctl.signal });
  for await (const ev of stream) {
    seen.push(ev.token);
    if (seen.length === 6) ctl.abort();
  }
  const r = await stream.result;
  assert.is(r.finishReason, 'abort');
  assert.ok(r.tokens.length >= 6 && r.tokens.length < 40, String(r.tokens.length));
  assert.equal(r.tokens, expected(60, r.tokens.length));
  assert.is(e.kvBlocks.free, e.kvBlocks.total);
  await e.close();
});

test('limits.decodeSteps is checked: a whole number from 1 to 64', async () => {
  for (const decodeSteps of [0, 2.5, 65]) {
    try {
      await createEngine({ model: MODEL, backend: countingBackend({ chain: true }), limits: { decodeSteps } });
      assert.unreachable(`decodeSteps ${decodeSteps} accepted`);
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, 'limits.decodeSteps');
    }
  }
});

test('chainArgmaxSteps refuses prompt steps and steps past a sequence\'s blocks', async () => {
  const program = { run: async () => new Float32Array(0), dispose: async () => {} };
  const prompt: StepBatch = { tokenIds: Int32Array.of(1, 2), positions: Int32Array.of(0, 1), slots: Int32Array.of(0, 1), sequences: [{ queryStart: 0, queryLength: 2, contextLength: 2, blockTable: Int32Array.of(0) }], selectedRows: Int32Array.of(1) };
  const refused = await chainArgmaxSteps(program, prompt, 2, 4).then(() => null, (e: Error) => e);
  assert.ok(refused instanceof BackendError && /decode steps only/.test(refused.message), String(refused));
  const decode: StepBatch = { tokenIds: Int32Array.of(5), positions: Int32Array.of(3), slots: Int32Array.of(7), sequences: [{ queryStart: 0, queryLength: 1, contextLength: 4, blockTable: Int32Array.of(1) }], selectedRows: Int32Array.of(0) };
  assert.throws(() => nextDecodeStep(decode, Int32Array.of(6), 4), (e: Error) => e instanceof BackendError && /past its 1 KV-cache blocks/.test(e.message));
  const next = nextDecodeStep({ ...decode, sequences: [{ ...decode.sequences[0], blockTable: Int32Array.of(1, 9) }] }, Int32Array.of(6), 4);
  assert.equal(layout(next), { ids: [6], positions: [4], slots: [36], context: [5] });
});

test.run();
