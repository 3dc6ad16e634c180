// The embedded default model (packages/server/model, trained by tools/default-model/train.py): zinfer
// reproduces transformers' float32 logits and greedy text on it, so what users first see is exact.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, SafetensorsFile } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';

const MODEL = resolve(fileURLToPath(import.meta.url), '../../model');

test('default model: prompt logits within 1e-3 of transformers, greedy text identical', async () => {
  const expected = JSON.parse(readFileSync(join(MODEL, 'expected.json'), 'utf8'));
  const f = SafetensorsFile.open(join(MODEL, 'expected-logits.safetensors'));
  const want = f.read('logits');
  f.close();
  const engine = await createEngine({ model: MODEL, backend: referenceBackend() });
  try {
    assert.equal(engine.tokenizer!.encode(expected.prompt_text), expected.input_ids);
    const r = await engine.generate({ prompt: expected.prompt_text, maxTokens: expected.greedy_tokens.length, temperature: 0, ignoreEos: true, promptLogits: true }).result;
    const vocab = want.shape[1];
    let maxErr = 0;
    r.promptLogits!.forEach((row, p) => row.forEach((x, i) => (maxErr = Math.max(maxErr, Math.abs(x - want.data[p * vocab + i])))));
    assert.ok(maxErr <= 1e-3, `max abs logit error ${maxErr}`);
    assert.equal(r.tokens, expected.greedy_tokens);
    assert.is(engine.tokenizer!.decode(r.tokens, { skipSpecialTokens: true }), expected.greedy_text); // Python decodes without specials
  } finally {
    await engine.close();
  }
});

test.run();
