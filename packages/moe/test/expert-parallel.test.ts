// Expert parallelism on the MoE fixtures: ep ∈ {1, 2, 4} with each placement plugin gives the plain
// run's greedy tokens and logits within 1e-4 (and so transformers' within 1e-3), through createEngine.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, loadModel, type ParallelStrategy } from '@zinfer/core';
import { greedyRun } from '@zinfer/core/testing';
import { referenceBackend } from '@zinfer/kernels/reference';
import { contiguousPlacement, expertParallel, loadAwarePlacement, planExpertParallel, roundRobinPlacement } from '../src/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/moe');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());

const run = (dir: string, ids: number[], parallel?: ParallelStrategy) => greedyRun({ model: dir, backend: referenceBackend(), parallel }, ids);

const skewed = new Float64Array([100, 1, 50, 2]);
const placements = [contiguousPlacement(), roundRobinPlacement(), loadAwarePlacement({ load: () => skewed })];

for (const arch of ARCHS) {
  test(`${arch}: ep 1, 2, 4 with every placement give the plain run's tokens and logits`, async () => {
    const dir = join(FIXTURES, arch);
    const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
    const base = await run(dir, ids);
    for (const size of [1, 2, 4]) {
      for (const placement of placements) {
        const r = await run(dir, ids, expertParallel({ size, placement, ranks: 'inline' }));
        const what = `${arch} ep=${size} ${placement.name}`;
        assert.equal(r.tokens, base.tokens, what);
        let d = 0;
        r.promptLogits!.forEach((row, p) => row.forEach((x, i) => (d = Math.max(d, Math.abs(x - base.promptLogits![p][i])))));
        assert.ok(d <= 1e-4, `${what}: logits differ by ${d}`);
      }
    }
  });
}

test('worker-thread ranks: each holds only its experts and the tokens match', async () => {
  const dir = join(FIXTURES, 'mixtral');
  const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
  const r = await run(dir, ids, expertParallel({ size: 2, placement: roundRobinPlacement() }));
  assert.equal(r.tokens, (await run(dir, ids)).tokens);
  const model = await loadModel(dir);
  const plan = planExpertParallel(model.graph, { size: 2, placement: roundRobinPlacement(), dense: 'replicated' });
  const experts = (g: (typeof plan.ranks)[number]['graph']) => [...g.weights.keys()].filter((w) => w.includes('.experts.')).length;
  assert.equal(plan.ranks.map((rank) => experts(rank.graph)), [2 * 2 * 3, 2 * 2 * 3], '2 layers × 2 experts × 3 matrices per rank');
  model.weights.close();
});

test('placements: contiguous and round-robin layouts, load-aware balance, bad input refused', () => {
  assert.equal([...contiguousPlacement().place({ layer: 0, numExperts: 8, ranks: 4 })], [0, 0, 1, 1, 2, 2, 3, 3]);
  assert.equal([...roundRobinPlacement().place({ layer: 0, numExperts: 8, ranks: 4 })], [0, 1, 2, 3, 0, 1, 2, 3]);
  const owner = loadAwarePlacement({ load: () => undefined }).place({ layer: 0, numExperts: 4, ranks: 2, load: new Float64Array([10, 9, 1, 1]) });
  assert.ok(owner[0] !== owner[1], 'the two busiest experts go to different ranks');
  assert.throws(() => loadAwarePlacement({ load: () => new Float64Array(3) }).place({ layer: 0, numExperts: 4, ranks: 2 }), (e: unknown) => e instanceof ConfigError);
});

test.run();
