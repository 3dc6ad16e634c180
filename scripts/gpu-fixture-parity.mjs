// Fixture parity the GPU checks share: a parallel run against the single-GPU run of the same fixture
// (gpu-moe-check.mjs, gpu-parallel-check.mjs), and a run against transformers' stored logits and greedy
// tokens (gpu-check.mjs, gpu-check-moe.mjs).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Greedy tokens identical and prompt logits within 1e-3 of `single` (NaN counts as infinitely off); throws otherwise. */
export function sameAsSingle(got, single) {
  let worst = 0;
  got.promptLogits.forEach((row, p) => row.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - single.promptLogits[p][i]) || (Number.isNaN(v) ? Infinity : 0)))));
  const same = got.tokens.length === single.tokens.length && got.tokens.every((t, i) => t === single.tokens[i]);
  const msg = `logits max abs diff ${worst.toExponential(2)}`;
  if (!same) throw new Error(`${msg}; greedy ${JSON.stringify(got.tokens)} != ${JSON.stringify(single.tokens)}`);
  if (!(worst <= 1e-3)) throw new Error(`${msg} > 1e-3`);
  return msg;
}

/** Greedy run of a fixture's prompt (or `inputIds`): 8 tokens with prompt logits, the engine closed after. */
export async function runFixture(core, dir, backend, parallel = null, inputIds = null) {
  const ids = inputIds ?? JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids;
  const engine = await core.createEngine({ model: dir, backend, ...(parallel ? { parallel } : {}) });
  try {
    return await engine.generate({ inputIds: ids, maxTokens: 8, temperature: 0, ignoreEos: true, promptLogits: true }).result;
  } finally {
    await engine.close();
  }
}

/** The fixture at `dir` against transformers: prompt logits max abs ≤ 1e-3 and 16 greedy tokens identical. */
export async function againstTransformers(core, dir, backend) {
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  const f = core.SafetensorsFile.open(join(dir, 'expected-logits.safetensors'));
  const t = f.read('logits');
  f.close();
  const vocab = t.shape[1];
  const engine = await core.createEngine({ model: dir, backend });
  try {
    const r = await engine.generate({ inputIds: expected.input_ids, maxTokens: 16, temperature: 0, ignoreEos: true, promptLogits: true }).result;
    let maxErr = 0;
    r.promptLogits.forEach((row, p) => {
      for (let i = 0; i < vocab; i++) maxErr = Math.max(maxErr, Math.abs(row[i] - t.data[p * vocab + i]) || (Number.isNaN(row[i]) ? Infinity : 0));
    });
    const same = r.tokens.length === expected.greedy_tokens.length && r.tokens.every((x, i) => x === expected.greedy_tokens[i]);
    const msg = `max abs err ${maxErr.toExponential(2)} (${expected.stored_dtype})`;
    if (!(maxErr <= 1e-3)) throw new Error(`${msg} > 1e-3`);
    if (!same) throw new Error(`${msg}; greedy ${JSON.stringify(r.tokens)} != ${JSON.stringify(expected.greedy_tokens)}`);
    return msg;
  } finally {
    await engine.close();
  }
}
