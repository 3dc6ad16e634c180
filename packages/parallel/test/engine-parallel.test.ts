// Parallel runs through createEngine, as users run them: every fixture architecture at tp ∈ {1, 2, 4},
// pp ∈ {2} and tp 2 × pp 2 gives the single-device greedy tokens exactly and prompt logits within 1e-4.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, loadModel, type ParallelStrategy, type SampleRow, type StepBatch } from '@zinfer/core';
import { greedyRun } from '@zinfer/core/testing';
import { referenceBackend } from '@zinfer/kernels/reference';
import { pipelineParallel, tensorParallel } from '../src/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());

const run = (dir: string, ids: number[], parallel?: ParallelStrategy) => greedyRun({ model: dir, backend: referenceBackend(), parallel }, ids);

for (const arch of ARCHS) {
  test(`${arch}: tp 1, 2, 4, pp 2 and tp 2 × pp 2 give the plain run's tokens and logits`, async () => {
    const dir = join(FIXTURES, arch);
    const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
    const base = await run(dir, ids);
    const strategies = [
      ...[1, 2, 4].map((size) => tensorParallel({ size, ranks: 'inline' })),
      pipelineParallel({ stages: 2, ranks: 'inline' }),
      pipelineParallel({ stages: 2, tensorSize: 2, ranks: 'inline' }),
    ];
    for (const strategy of strategies) {
      const r = await run(dir, ids, strategy);
      assert.equal(r.tokens, base.tokens, `${arch} ${strategy.name} tokens`);
      let d = 0;
      r.promptLogits!.forEach((row, p) => row.forEach((x, i) => (d = Math.max(d, Math.abs(x - base.promptLogits![p][i])))));
      assert.ok(d <= 1e-4, `${arch} ${strategy.name}: logits differ by ${d}`);
    }
  });
}

test('tp 2 worker ranks chain greedy decode (every rank feeds its own argmax): the plain run\'s tokens in runs of decodeSteps; pipelines do not chain', async () => {
  const dir = join(FIXTURES, 'llama3');
  const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
  const base = await run(dir, ids);
  /** The strategy, with every runArgmaxSteps call of its program counted. */
  const counted = (inner: ParallelStrategy, calls: number[]): ParallelStrategy => ({
    ...inner,
    async launch(args) {
      const program = await inner.launch(args);
      const chain = program.runArgmaxSteps?.bind(program);
      return Object.assign(program, chain ? { runArgmaxSteps: (b: StepBatch, steps: number) => (calls.push(steps), chain(b, steps)) } : {});
    },
  });
  for (const [inner, chains] of [[tensorParallel({ size: 2 }), true], [tensorParallel({ size: 2, ranks: 'inline' }), true], [pipelineParallel({ stages: 2, ranks: 'inline' }), false]] as const) {
    const calls: number[] = [];
    const r = await greedyRun({ model: dir, backend: referenceBackend(), parallel: counted(inner, calls), limits: { decodeSteps: 5 } }, ids);
    assert.equal(r.tokens, base.tokens, inner.name);
    // 12 tokens: the prompt step's, then 11 by decode: two runs of 5, and a last step alone.
    assert.equal(calls, chains ? [5, 5] : [], `${inner.name}: chained runs`);
  }
});

test('tp 2 worker ranks chain sampled decode (seeded, no penalty): every rank picks with the step\'s draws; the plain run\'s tokens', async () => {
  const dir = join(FIXTURES, 'llama3');
  const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
  const req = { inputIds: ids, maxTokens: 11, temperature: 1.1, topK: 30, topP: 0.95, seed: 7, ignoreEos: true };
  const plain = await createEngine({ model: dir, backend: referenceBackend() });
  const want = (await plain.generate(req).result).tokens;
  await plain.close();
  const calls: number[] = [];
  const inner = tensorParallel({ size: 2 });
  const strategy: ParallelStrategy = {
    ...inner,
    async launch(args) {
      const program = await inner.launch(args);
      const chain = program.runSampleSteps!.bind(program);
      return Object.assign(program, { runSampleSteps: (b: StepBatch, rows: readonly (readonly SampleRow[])[]) => (calls.push(rows.length), chain(b, rows)) });
    },
  };
  const engine = await createEngine({ model: dir, backend: referenceBackend(), parallel: strategy, limits: { decodeSteps: 4 } });
  try {
    assert.equal((await engine.generate(req).result).tokens, want);
    assert.equal(calls, [4, 4, 2], '10 decode tokens: runs of 4, 4 and 2');
  } finally {
    await engine.close();
  }
});

test('Mixture-of-Experts models under tp 2, pp 2 and tp 2 × pp 2 give the plain run\'s tokens', async () => {
  for (const arch of ['mixtral', 'qwen2-moe']) {
    const dir = join(import.meta.dirname, '../../../fixtures/moe', arch);
    const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
    const base = await run(dir, ids);
    for (const strategy of [tensorParallel({ size: 2, ranks: 'inline' }), pipelineParallel({ stages: 2, ranks: 'inline' }), pipelineParallel({ stages: 2, tensorSize: 2, ranks: 'inline' })]) {
      const r = await run(dir, ids, strategy);
      assert.equal(r.tokens, base.tokens, `${arch} ${strategy.name}`);
    }
  }
});

for (const [name, parallel] of [
  ['tp 2', () => tensorParallel({ size: 2 })],
  ['pp 2 with micro-batches', () => pipelineParallel({ stages: 2, promptMicroBatches: 3, decodeMicroBatches: 2 })],
  ['tp 2 × pp 2', () => pipelineParallel({ stages: 2, tensorSize: 2 })],
] as const) {
  test(`worker-thread ranks, ${name}: several requests batched together get their own tokens`, async () => {
    const dir = join(FIXTURES, 'mistral');
    const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
    const engine = await createEngine({ model: dir, backend: referenceBackend(), parallel: parallel() });
    try {
      const prompts = [ids, ids.slice(3, 15), ids.slice(5), ids.slice(1, 6)];
      const together = await Promise.all(prompts.map((p) => engine.generate({ inputIds: p, maxTokens: 10, temperature: 0, ignoreEos: true }).result));
      for (const [i, p] of prompts.entries()) assert.equal(together[i].tokens, (await run(dir, p)).tokens.slice(0, 10), `prompt ${i}`);
    } finally {
      await engine.close();
    }
  });
}

test('sampled requests (seeded: top-k, top-p, min-p, penalty) get the plain run\'s tokens under worker and inline ranks: the output rank picks', async () => {
  const dir = join(FIXTURES, 'llama3');
  const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
  const requests = [
    { inputIds: ids, maxTokens: 10, temperature: 1.3, seed: 3, ignoreEos: true },
    { inputIds: ids.slice(4), maxTokens: 8, temperature: 0.9, topK: 20, topP: 0.9, seed: 4, ignoreEos: true },
    { inputIds: ids.slice(2, 12), maxTokens: 8, temperature: 1.1, minP: 0.05, repetitionPenalty: 1.3, seed: 5, ignoreEos: true },
    { inputIds: ids.slice(1), maxTokens: 6, temperature: 0, ignoreEos: true },
  ];
  const generate = async (parallel?: ParallelStrategy) => {
    const engine = await createEngine({ model: dir, backend: referenceBackend(), parallel });
    try {
      return (await Promise.all(requests.map((r) => engine.generate(r).result))).map((r) => r.tokens);
    } finally {
      await engine.close();
    }
  };
  const base = await generate();
  for (const strategy of [tensorParallel({ size: 2 }), pipelineParallel({ stages: 2, decodeMicroBatches: 2 }), pipelineParallel({ stages: 2, tensorSize: 2, ranks: 'inline' })]) {
    assert.equal(await generate(strategy), base, strategy.name);
  }
});

test('worker-thread pipelines overlap steps (concurrentSteps = stages), and crossStep: false turns it off; a lane\'s decode step is one micro-batch', async () => {
  const dir = join(FIXTURES, 'llama2');
  const model = await loadModel(dir);
  try {
    for (const [opts, want] of [[{ stages: 2 }, 2], [{ stages: 2, crossStep: false }, 1]] as const) {
      const strategy = pipelineParallel(opts);
      const program = await strategy.launch({ plan: strategy.plan(model.graph, []), backend: referenceBackend(), model: { dir }, weights: model.weights, kvCache: { numBlocks: 8, blockSize: 16 } });
      try {
        assert.is(program.concurrentSteps, want, JSON.stringify(opts));
        // Two decode steps of one sequence each, in flight together as two lanes would send them: the same
        // logits as one after the other (ranks take them in order; each is one micro-batch).
        const decode = (token: number, block: number): StepBatch => ({
          tokenIds: Int32Array.of(token), positions: Int32Array.of(0), slots: Int32Array.of(block * 16),
          sequences: [{ queryStart: 0, queryLength: 1, contextLength: 1, blockTable: Int32Array.of(block) }], selectedRows: Int32Array.of(0),
        });
        const together = await Promise.all([program.run(decode(3, 0), { concurrent: 2 }), program.run(decode(9, 1), { concurrent: 2 })]);
        const alone = [await program.run(decode(3, 2)), await program.run(decode(9, 3))];
        together.forEach((l, i) => assert.equal(Array.from(l), Array.from(alone[i]), `step ${i}`));
      } finally {
        await program.dispose();
      }
    }
  } finally {
    model.weights.close();
  }
});

test.run();
