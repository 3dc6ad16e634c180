// Parity with Hugging Face transformers on the cpu backend: every fixture model (f32, bf16 and f16 stored
// weights) gives transformers' prompt logits within 1e-3 and the same 16-token greedy continuation,
// through createEngine, as parity.test.ts checks for the reference backend.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, SafetensorsFile } from '@zinfer/core';
import { aloneAndTogether } from '@zinfer/core/testing';
import { cpuBackend } from '../src/cpu.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
const TOLERANCE = 1e-3;
const backend = cpuBackend({ threads: 2 });

function loadExpected(arch: string): { inputIds: number[]; greedy: number[]; logits: Float32Array; vocab: number } {
  const expected = JSON.parse(readFileSync(join(FIXTURES, arch, 'expected.json'), 'utf8')) as { input_ids: number[]; greedy_tokens: number[] };
  const f = SafetensorsFile.open(join(FIXTURES, arch, 'expected-logits.safetensors'));
  const t = f.read('logits');
  f.close();
  return { inputIds: expected.input_ids, greedy: expected.greedy_tokens, logits: t.data as Float32Array, vocab: t.shape[1] };
}

for (const arch of ARCHS) {
  test(`${arch}: prompt logits and greedy continuation match transformers on the cpu backend`, async () => {
    const { inputIds, greedy, logits, vocab } = loadExpected(arch);
    const engine = await createEngine({ model: join(FIXTURES, arch), backend });
    try {
      const r = await engine.generate({ inputIds, maxTokens: 16, temperature: 0, ignoreEos: true, promptLogits: true }).result;
      assert.is(r.promptLogits!.length, inputIds.length);
      let maxErr = 0;
      r.promptLogits!.forEach((row, p) => {
        for (let i = 0; i < vocab; i++) maxErr = Math.max(maxErr, Math.abs(row[i] - logits[p * vocab + i]));
      });
      if (process.env.ZINFER_PARITY_REPORT) console.log(`${arch}: max abs logit error ${maxErr.toExponential(2)}`);
      assert.ok(maxErr <= TOLERANCE, `${arch}: max abs logit error ${maxErr} > ${TOLERANCE}`);
      assert.equal(r.tokens, greedy, `${arch}: greedy continuation`);
    } finally {
      await engine.close();
    }
  });
}

test('batched, chunked generation gives every sequence the tokens it gets alone', async () => {
  const engine = await createEngine({ model: join(FIXTURES, 'qwen2'), backend, limits: { maxBatchTokens: 7 } });
  try {
    const ids = loadExpected('qwen2').inputIds;
    const prompts = [0, 1, 2, 3].map((i) => ids.slice(i, 10 + 3 * i));
    const { alone, together } = await aloneAndTogether(engine, prompts);
    together.forEach((t, i) => assert.equal(t, alone[i], `sequence ${i}`));
  } finally {
    await engine.close();
  }
});

test.run();
