// Mixture-of-Experts parity with transformers (fixtures/moe, made by scripts/make-fixtures.py):
// Mixtral (top-2 of 4, renormalized), Qwen2-MoE with a gated shared expert, without and with
// norm_topk_prob (the latter stored in bf16). Logits ≤ 1e-3, greedy identical, on the reference backend.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, SafetensorsFile } from '@zinfer/core';
import { referenceBackend } from '../src/reference.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/moe');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());

for (const arch of ARCHS) {
  test(`${arch}: prompt logits and greedy continuation match transformers`, async () => {
    const dir = join(FIXTURES, arch);
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
    const f = SafetensorsFile.open(join(dir, 'expected-logits.safetensors'));
    const want = f.read('logits');
    f.close();
    const engine = await createEngine({ model: dir, backend: referenceBackend() });
    try {
      const r = await engine.generate({ inputIds: expected.input_ids, maxTokens: 16, temperature: 0, ignoreEos: true, promptLogits: true }).result;
      const vocab = want.shape[1];
      let maxErr = 0;
      r.promptLogits!.forEach((row, p) => row.forEach((x, i) => (maxErr = Math.max(maxErr, Math.abs(x - want.data[p * vocab + i])))));
      assert.ok(maxErr <= 1e-3, `${arch}: max abs logit error ${maxErr}`);
      assert.equal(r.tokens, expected.greedy_tokens);
    } finally {
      await engine.close();
    }
  });
}

test.run();
