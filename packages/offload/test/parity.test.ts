// Offload changes where weights live, never what the model computes: on every tier and prefetch depth the
// tokens (greedy and seeded sampling) and the prompt logits are bit-identical to the resident run.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cpuBackend } from '@zinfer/kernels/cpu';
import { referenceBackend } from '@zinfer/kernels/reference';
import { weightOffload } from '../src/index.js';
import { runModel, type RunResult } from './helpers.js';

const MODELS = ['llama3', 'gpt2'];
const BACKENDS = [
  { name: 'reference', make: referenceBackend },
  { name: 'cpu', make: () => cpuBackend({ threads: 2 }) },
];
const baseline = new Map<string, RunResult>();

function assertSame(got: RunResult, want: RunResult, what: string): void {
  assert.equal(got.greedy.tokens, want.greedy.tokens, `${what}: greedy tokens`);
  assert.equal(got.sampled.tokens, want.sampled.tokens, `${what}: sampled tokens`);
  const a = got.greedy.promptLogits!;
  const b = want.greedy.promptLogits!;
  assert.is(a.length, b.length);
  a.forEach((row, i) => assert.ok(row.every((x, j) => Object.is(x, b[i][j])), `${what}: prompt logits row ${i} differ`));
}

for (const { name, make } of BACKENDS) {
  for (const model of MODELS) {
    test(`${name} ${model}: resident baseline`, async () => {
      const r = await runModel(model, make());
      assert.is(r.greedy.tokens.length, 6);
      baseline.set(`${name}/${model}`, r);
    });
    for (const tier of ['host', 'disk'] as const) {
      for (const prefetch of [0, 1, 3]) {
        test(`${name} ${model}: ${tier} tier, prefetch ${prefetch} = resident, bit for bit`, async () => {
          const r = await runModel(model, make(), weightOffload({ tier, prefetch }), (p) => {
            assert.ok(p.stream && p.stream.groups.length >= 2, 'every layer streams without a device budget');
            const t = p.timeline();
            for (let g = 0; g < p.stream.groups.length; g++) {
              assert.ok(t.some((e) => e.group === g && e.kind === 'fetch'), `fetch event of group ${g}`);
              assert.ok(t.some((e) => e.group === g && e.kind === 'compute'), `compute event of group ${g}`);
            }
          });
          assertSame(r, baseline.get(`${name}/${model}`)!, `${tier} prefetch ${prefetch}`);
          assert.is(r.summary.length, 2);
          assert.match(r.summary[1], new RegExp(`^${tier}: layers 0-\\d+ streamed`));
        });
      }
    }
  }
}

test.run();
