import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CapacityError, ConfigError, createEngine, RequestError, TokenizerError, type EngineConfig, type GenerationResult } from '../src/index.js';
import { countingBackend } from './helpers/counting-backend.js';

const MODEL = join(import.meta.dirname, '../../../fixtures/models/llama3'); // vocab 384, eos 0, context 128

async function engine(extra: Partial<EngineConfig> = {}) {
  const backend = countingBackend();
  const e = await createEngine({ model: MODEL, backend, ...extra });
  return { e, backend };
}

async function throwsAsync<T extends Error>(fn: () => Promise<unknown> | unknown, cls: new (...a: never[]) => T, field?: string): Promise<T> {
  try {
    await fn();
  } catch (err) {
    assert.instance(err, cls, `expected ${cls.name}, got ${String(err)}`);
    if (field) assert.is((err as unknown as { info: { field?: string } }).info.field, field, (err as Error).message);
    return err as T;
  }
  assert.unreachable(`expected ${cls.name} to be thrown`);
  throw new Error('unreachable');
}

test('config: each wrong field gives one ConfigError naming it', async () => {
  const backend = countingBackend();
  await throwsAsync(() => createEngine({ backend } as unknown as EngineConfig), ConfigError, 'model');
  await throwsAsync(() => createEngine({ model: MODEL, backend: 'reference' } as unknown as EngineConfig), ConfigError, 'backend');
  await throwsAsync(() => createEngine({ model: MODEL, backend, limits: { blockSize: 0 } }), ConfigError, 'limits.blockSize');
  await throwsAsync(() => createEngine({ model: MODEL, backend, dtype: 'f64' } as unknown as EngineConfig), ConfigError, 'dtype');
  const e = await throwsAsync(() => createEngine({ model: MODEL, backend, colour: 'red' } as unknown as EngineConfig), ConfigError, 'colour');
  assert.match(e.message, 'colour');
});

test('greedy generation follows the model and stops at max tokens', async () => {
  const { e } = await engine();
  const r = await e.generate({ inputIds: [5, 6, 7], maxTokens: 4, temperature: 0 }).result;
  assert.equal(r.tokens, [8, 9, 10, 11]);
  assert.is(r.finishReason, 'length');
  assert.is(r.promptTokens, 3);
  await e.close();
});

test('streaming yields every token in order, then the result resolves', async () => {
  const { e } = await engine();
  const s = e.generate({ inputIds: [20], maxTokens: 5, temperature: 0 });
  const seen: number[] = [];
  for await (const ev of s) {
    assert.is(ev.index, seen.length);
    seen.push(ev.token);
  }
  assert.equal(seen, [21, 22, 23, 24, 25]);
  assert.equal((await s.result).tokens, seen);
  await e.close();
});

test('stop token ids and the model eos end generation with reason stop', async () => {
  const { e } = await engine();
  const a = await e.generate({ inputIds: [5], maxTokens: 10, temperature: 0, stopTokenIds: [8] }).result;
  assert.equal(a.tokens, [6, 7, 8]);
  assert.is(a.finishReason, 'stop');
  const b = await e.generate({ inputIds: [381], maxTokens: 10, temperature: 0 }).result; // 382, 383, then eos 0
  assert.equal(b.tokens, [382, 383, 0]);
  assert.is(b.finishReason, 'stop');
  const c = await e.generate({ inputIds: [381], maxTokens: 5, temperature: 0, ignoreEos: true }).result;
  assert.equal(c.tokens, [382, 383, 0, 1, 2]);
  await e.close();
});

test('stop strings cut the text before the stop string', async () => {
  const { e } = await engine();
  const full = await e.generate({ inputIds: [300], maxTokens: 12, temperature: 0 }).result;
  assert.ok(full.text && full.text.length > 6, `text: ${full.text}`);
  const stop = full.text!.slice(4, 6);
  const cut = await e.generate({ inputIds: [300], maxTokens: 12, temperature: 0, stopStrings: [stop] }).result;
  assert.is(cut.finishReason, 'stop');
  assert.is(cut.text, full.text!.slice(0, full.text!.indexOf(stop)));
  await e.close();
});

test('sequences join and leave between steps; decode rows come before prompt chunks', async () => {
  const { e, backend } = await engine({ autoStep: false, limits: { maxBatchTokens: 4 } });
  const a = e.generate({ inputIds: [1, 2, 3, 4, 5, 6], maxTokens: 3, temperature: 0 });
  assert.is((await e.step()).tokens, 4); // first prompt chunk of A
  assert.is((await e.step()).tokens, 2); // rest of A's prompt, A samples its first token
  const b = e.generate({ inputIds: [50, 51, 52], maxTokens: 2, temperature: 0 });
  await e.step(); // A decodes one token, B's prompt takes the remaining budget
  const joint = backend.batches[backend.batches.length - 1];
  assert.equal([...joint.tokenIds], [7, 50, 51, 52]);
  assert.is(joint.sequences.length, 2);
  while ((await e.step()).tokens > 0);
  assert.equal((await a.result).tokens, [7, 8, 9]);
  assert.equal((await b.result).tokens, [53, 54]);
  assert.is(e.kvBlocks.free, e.kvBlocks.total, 'every block is back in the pool');
  await e.close();
});

test('chunked prefill gives the same positions and slots as one-shot prefill', async () => {
  const { e, backend } = await engine({ autoStep: false, limits: { maxBatchTokens: 3 } });
  e.generate({ inputIds: [9, 8, 7, 6, 5, 4, 3], maxTokens: 1, temperature: 0 });
  while ((await e.step()).tokens > 0);
  const pos = backend.batches.flatMap((b) => [...b.positions]);
  assert.equal(pos, [0, 1, 2, 3, 4, 5, 6]);
  const ctx = backend.batches.map((b) => b.sequences[0].contextLength);
  assert.equal(ctx, [3, 6, 7]);
  await e.close();
});

test('an AbortSignal or cancel() ends a request with reason abort and frees its blocks', async () => {
  const { e } = await engine({ autoStep: false });
  const ctl = new AbortController();
  const a = e.generate({ inputIds: [1], maxTokens: 50, temperature: 0, signal: ctl.signal });
  const b = e.generate({ inputIds: [1], maxTokens: 50, temperature: 0 });
  await e.step();
  await e.step();
  ctl.abort();
  b.cancel();
  await e.step();
  const [ra, rb] = await Promise.all([a.result, b.result]);
  assert.is(ra.finishReason, 'abort');
  assert.is(rb.finishReason, 'abort');
  assert.equal(ra.tokens, [2, 3]);
  assert.is(e.kvBlocks.free, e.kvBlocks.total);
  await e.close();
});

test('a failing step fails its requests and the engine keeps serving others', async () => {
  const { e, backend } = await engine({ autoStep: false });
  backend.poison = 99;
  const bad = e.generate({ inputIds: [99], maxTokens: 3, temperature: 0 });
  await e.step();
  await assert.not.throws(() => undefined);
  let failed = false;
  await bad.result.catch(() => (failed = true));
  assert.ok(failed);
  const good = e.generate({ inputIds: [10], maxTokens: 2, temperature: 0 });
  while ((await e.step()).tokens > 0);
  assert.equal((await good.result).tokens, [11, 12]);
  await e.close();
});

test('capacity: prompt longer than the context, or more blocks than the cache has', async () => {
  const { e } = await engine({ limits: { kvCacheBytes: 4 * 16 * 2 * 2 * 2 * 16 * 4 } }); // 4 blocks of 16 tokens
  await throwsAsync(() => e.generate({ inputIds: new Array(128).fill(1) }), CapacityError, 'prompt');
  await throwsAsync(() => e.generate({ inputIds: [1, 2], maxTokens: 100 }), CapacityError, 'max_tokens');
  const ok = await e.generate({ inputIds: [1, 2], maxTokens: 20, temperature: 0 }).result;
  assert.is(ok.tokens.length, 20);
  await e.close();
});

test('invalid request parameters are RequestErrors naming the field', async () => {
  const { e } = await engine();
  await throwsAsync(() => e.generate({ inputIds: [1], temperature: NaN }), RequestError, 'temperature');
  await throwsAsync(() => e.generate({ inputIds: [1], topP: 0 }), RequestError, 'top_p');
  await throwsAsync(() => e.generate({ inputIds: [1], topP: 1.5 }), RequestError, 'top_p');
  await throwsAsync(() => e.generate({ inputIds: [1], maxTokens: 0 }), RequestError, 'max_tokens');
  await throwsAsync(() => e.generate({ inputIds: [1, 384] }), RequestError, 'input_ids');
  await throwsAsync(() => e.generate({ inputIds: [1], prompt: 'x' }), RequestError, 'prompt');
  await e.close();
});

test('seeded sampling: same seed, same tokens; the batch around it does not matter', async () => {
  const { e } = await engine();
  const req = { inputIds: [3], maxTokens: 12, temperature: 1.5, seed: 1234 };
  const one = await e.generate(req).result;
  const [two] = await Promise.all([e.generate(req).result, e.generate({ ...req, seed: 99 }).result, e.generate({ inputIds: [7, 7, 7], maxTokens: 5 }).result]);
  assert.equal(two.tokens, one.tokens);
  await e.close();
});

test('prompt logits: one row per prompt position when asked', async () => {
  const { e } = await engine({ limits: { maxBatchTokens: 2 } });
  const r: GenerationResult = await e.generate({ inputIds: [4, 5, 6, 7, 8], maxTokens: 1, temperature: 0, promptLogits: true }).result;
  assert.is(r.promptLogits!.length, 5);
  r.promptLogits!.forEach((row, i) => assert.is(row.indexOf(Math.max(...row)), [5, 6, 7, 8, 9][i]));
  await e.close();
});

test('chat messages are rendered with the chat template and tokenized without extra specials', async () => {
  const { e, backend } = await engine({ autoStep: false });
  const messages = [{ role: 'user', content: 'Hello there' }];
  e.generate({ messages, maxTokens: 1, temperature: 0 });
  await e.step();
  const rendered = e.tokenizer!.applyChatTemplate(messages, { addGenerationPrompt: true });
  assert.ok(rendered.endsWith('<|im_start|>assistant\n'), rendered);
  assert.equal([...backend.batches[0].tokenIds], e.tokenizer!.encode(rendered, { addSpecialTokens: false }));
  await e.close();
});

test('greedy steps use a backend\'s runArgmax (ids only); sampling and prompt logits still get logits', async () => {
  const backend = countingBackend({ argmax: true });
  const e = await createEngine({ model: MODEL, backend });
  const greedy = await e.generate({ inputIds: [5, 6], maxTokens: 4, temperature: 0 }).result;
  assert.equal(greedy.tokens, [7, 8, 9, 10]);
  assert.is(backend.argmaxSteps, 4);
  await e.generate({ inputIds: [5], maxTokens: 3, temperature: 0.7, seed: 1 }).result;
  await e.generate({ inputIds: [5], maxTokens: 2, temperature: 0, repetitionPenalty: 1.3 }).result;
  const logits = await e.generate({ inputIds: [5, 6], maxTokens: 1, temperature: 0, promptLogits: true }).result;
  assert.is(logits.promptLogits!.length, 2);
  assert.is(backend.argmaxSteps, 4, 'no other request could use the argmax path');
  await e.close();
});

test('sampled steps use a backend\'s runSample: the same tokens as host sampling for the same seeds', async () => {
  const requests = [
    { inputIds: [5, 6], maxTokens: 6, temperature: 1.5, seed: 7 },
    { inputIds: [9], maxTokens: 5, temperature: 0.8, topK: 3, topP: 0.9, seed: 8 },
    { inputIds: [9, 9, 2], maxTokens: 5, temperature: 1.2, minP: 0.1, repetitionPenalty: 1.4, seed: 9 },
    { inputIds: [30], maxTokens: 4, temperature: 0 },
    { inputIds: [40], maxTokens: 3, temperature: 0, repetitionPenalty: 2 },
  ];
  const generate = async (backend: ReturnType<typeof countingBackend>) => {
    const e = await createEngine({ model: MODEL, backend });
    const out = await Promise.all(requests.map((r) => e.generate(r).result));
    await e.close();
    return out.map((r) => r.tokens);
  };
  const device = countingBackend({ sample: true });
  assert.equal(await generate(device), await generate(countingBackend()));
  assert.ok(device.sampleSteps.length > 0);
  const rows = device.sampleSteps.flat();
  // Greedy rows draw nothing; sampled rows carry a draw in [0, 1); penalized ids are the distinct history.
  assert.ok(rows.every((r) => (r.temperature === 0 ? r.uniform === 0 : r.uniform >= 0 && r.uniform < 1)));
  const penalized = rows.find((r) => r.repetitionPenalty === 1.4)!;
  assert.equal([...penalized.penalized].slice(0, 2), [9, 2], 'the prompt 9, 9, 2 gives 9 and 2 once');
  assert.ok(rows.filter((r) => r.repetitionPenalty === 1).every((r) => r.penalized.length === 0));
  // A step that needs prompt logits goes through run().
  const steps = device.sampleSteps.length;
  const e = await createEngine({ model: MODEL, backend: device });
  await e.generate({ inputIds: [5, 6], maxTokens: 1, temperature: 0.7, seed: 1, promptLogits: true }).result;
  assert.is(device.sampleSteps.length, steps);
  await e.close();
});

test('without tokenizer files, token ids still run and text input fails clearly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'zinfer-notok-'));
  try {
    for (const f of ['config.json', 'model.safetensors']) cpSync(join(MODEL, f), join(dir, f));
    const backend = countingBackend();
    const e = await createEngine({ model: dir, backend });
    assert.is(e.tokenizer, null);
    const r = await e.generate({ inputIds: [1, 2], maxTokens: 2, temperature: 0 }).result;
    assert.equal(r.tokens, [3, 4]);
    assert.is(r.text, null);
    const err = await throwsAsync(() => e.generate({ prompt: 'hello' }), TokenizerError, 'prompt');
    assert.match(err.message, 'tokenizer.json');
    await e.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sequences counts running and waiting requests', async () => {
  const { e } = await engine({ autoStep: false, limits: { maxSequences: 1 } });
  assert.equal(e.sequences, { running: 0, waiting: 0 });
  e.generate({ inputIds: [1], maxTokens: 2, temperature: 0 });
  e.generate({ inputIds: [2], maxTokens: 2, temperature: 0 });
  assert.equal(e.sequences, { running: 0, waiting: 2 });
  await e.step();
  assert.equal(e.sequences, { running: 1, waiting: 1 });
  while ((await e.step()).tokens > 0);
  assert.equal(e.sequences, { running: 0, waiting: 0 });
  await e.close();
});

test('a paused request sits out of the steps, keeps its blocks, and continues where it stopped', async () => {
  const { e } = await engine({ autoStep: false });
  const a = e.generate({ inputIds: [10], maxTokens: 4, temperature: 0 });
  const b = e.generate({ inputIds: [20], maxTokens: 4, temperature: 0 });
  await e.step(); // both prefill and sample their first token
  a.pause();
  assert.ok(a.paused);
  while ((await e.step()).tokens > 0);
  assert.equal((await b.result).tokens, [21, 22, 23, 24]);
  assert.is(e.kvBlocks.free, e.kvBlocks.total - 1, 'A keeps its block while paused');
  assert.is((await e.step()).tokens, 0, 'nothing runs while A is paused');
  a.resume();
  while ((await e.step()).tokens > 0);
  assert.equal((await a.result).tokens, [11, 12, 13, 14]);
  assert.is(e.kvBlocks.free, e.kvBlocks.total);
  await e.close();
});

test('the step loop idles while every request is paused; resume and cancel wake it', async () => {
  const { e, backend } = await engine();
  const a = e.generate({ inputIds: [10], maxTokens: 50, temperature: 0 });
  a.pause();
  await new Promise((r) => setTimeout(r, 20));
  const steps = backend.batches.length;
  await new Promise((r) => setTimeout(r, 20));
  assert.is(backend.batches.length, steps, 'no steps while paused');
  const seen: number[] = [];
  a.resume();
  for await (const ev of a) {
    seen.push(ev.token);
    if (seen.length === 3) {
      a.pause();
      setTimeout(() => a.cancel(), 10);
    }
  }
  const r = await a.result;
  assert.is(r.finishReason, 'abort');
  assert.ok(r.tokens.length < 50, `stopped early: ${r.tokens.length}`);
  assert.is(e.kvBlocks.free, e.kvBlocks.total, 'cancel of a paused request frees its blocks');
  await e.close();
});

test.run();
