// Parity with Hugging Face transformers: every fixture model (made by scripts/make-fixtures.py with
// transformers' float32 forward) must give the same prompt logits (max abs error ≤ 1e-3) and the same
// 16-token greedy continuation through createEngine on the reference backend.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, SafetensorsFile } from '@zinfer/core';
import { aloneAndTogether } from '@zinfer/core/testing';
import { referenceBackend } from '../src/reference.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
const TOLERANCE = 1e-3;

interface Expected {
  input_ids: number[];
  greedy_tokens: number[];
  prompt_text: string;
  text_ids: number[];
}

export function loadExpected(arch: string): { expected: Expected; logits: Float32Array; vocab: number } {
  const expected = JSON.parse(readFileSync(join(FIXTURES, arch, 'expected.json'), 'utf8')) as Expected;
  const f = SafetensorsFile.open(join(FIXTURES, arch, 'expected-logits.safetensors'));
  const t = f.read('logits');
  f.close();
  return { expected, logits: t.data as Float32Array, vocab: t.shape[1] };
}

for (const arch of ARCHS) {
  test(`${arch}: prompt logits and greedy continuation match transformers`, async () => {
    const { expected, logits, vocab } = loadExpected(arch);
    const engine = await createEngine({ model: join(FIXTURES, arch), backend: referenceBackend() });
    try {
      const r = await engine.generate({ inputIds: expected.input_ids, maxTokens: 16, temperature: 0, ignoreEos: true, promptLogits: true }).result;
      assert.is(r.promptLogits!.length, expected.input_ids.length);
      let maxErr = 0;
      r.promptLogits!.forEach((row, p) => {
        for (let i = 0; i < vocab; i++) maxErr = Math.max(maxErr, Math.abs(row[i] - logits[p * vocab + i]));
      });
      assert.ok(maxErr <= TOLERANCE, `${arch}: max abs logit error ${maxErr} > ${TOLERANCE}`);
      assert.equal(r.tokens, expected.greedy_tokens, `${arch}: greedy continuation`);
      // The tokenizer gives the ids Python's tokenizers gave for the same text.
      assert.equal(engine.tokenizer!.encode(expected.prompt_text), expected.text_ids, `${arch}: tokenizer ids`);
    } finally {
      await engine.close();
    }
  });
}

test('bf16 weights held as bf16 and converted to f32 at load give the same logits', async () => {
  const dir = join(FIXTURES, 'llama3'); // stored bf16
  const { expected } = loadExpected('llama3');
  const run = async (dtype?: 'f32') => {
    const e = await createEngine({ model: dir, backend: referenceBackend(), dtype });
    const r = await e.generate({ inputIds: expected.input_ids, maxTokens: 1, temperature: 0, promptLogits: true }).result;
    await e.close();
    return r.promptLogits!;
  };
  const [a, b] = [await run(), await run('f32')];
  a.forEach((row, i) => assert.equal(row, b[i]));
});

test('batched, chunked generation gives every sequence the tokens it gets alone', async () => {
  const engine = await createEngine({ model: join(FIXTURES, 'qwen3'), backend: referenceBackend(), limits: { maxBatchTokens: 7 } });
  try {
    const ids = loadExpected('qwen3').expected.input_ids;
    const prompts = [0, 1, 2, 3].map((i) => ids.slice(i, 10 + 3 * i)); // lengths 10, 12, 14, 16
    const { alone, together } = await aloneAndTogether(engine, prompts);
    together.forEach((t, i) => assert.equal(t, alone[i], `sequence ${i}`));
  } finally {
    await engine.close();
  }
});

test.run();
