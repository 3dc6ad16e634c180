// Expert slicing, hybrid tensor × expert parallelism and the all-to-all dispatch (plain and coordinated)
// on the MoE fixtures: every mode gives the plain run's greedy tokens and logits within 1e-4.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, createEngine, loadModel, type ParallelStrategy } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { contiguousPlacement, expertParallel, loadAwarePlacement, planExpertParallel, roundRobinPlacement, type ExpertParallelOptions } from '../src/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/moe');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
const idsOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];

async function run(dir: string, ids: number[], parallel?: ParallelStrategy) {
  const engine = await createEngine({ model: dir, backend: referenceBackend(), parallel });
  try {
    return await engine.generate({ inputIds: ids, maxTokens: 10, temperature: 0, ignoreEos: true, promptLogits: true }).result;
  } finally {
    await engine.close();
  }
}

type Base = Awaited<ReturnType<typeof run>>;

function assertSame(r: Base, base: Base, what: string): void {
  assert.equal(r.tokens, base.tokens, what);
  let d = 0;
  r.promptLogits!.forEach((row, p) => row.forEach((x, i) => (d = Math.max(d, Math.abs(x - base.promptLogits![p][i])))));
  assert.ok(d <= 1e-4, `${what}: logits differ by ${d}`);
}

const placements = [contiguousPlacement(), roundRobinPlacement(), loadAwarePlacement({ load: () => new Float64Array([100, 1, 50, 2]) })];
// [size, expert-slicing width, dense]: sliced experts with ranks > experts (8 ranks, 4 experts), tp2 × ep2.
const layouts: [number, number | undefined, 'sliced' | 'replicated'][] = [[2, 1, 'sliced'], [4, 2, 'sliced'], [4, 4, 'sliced'], [4, 1, 'replicated'], [8, undefined, 'replicated']];
const dispatches: Pick<ExpertParallelOptions, 'dispatch' | 'coordinated'>[] = [{ dispatch: 'all-reduce' }, { dispatch: 'all-to-all' }, { dispatch: 'all-to-all', coordinated: true }];

for (const arch of ARCHS) {
  test(`${arch}: expert slicing, tp × ep and all-to-all (plain, coordinated) match the plain run`, async () => {
    const dir = join(FIXTURES, arch);
    const ids = idsOf(dir);
    const base = await run(dir, ids);
    for (const [size, tensor, dense] of layouts) {
      for (const d of dispatches) {
        for (const placement of placements) {
          const opts: ExpertParallelOptions = { size, tensor, dense, placement, ranks: 'inline', ...d };
          assertSame(await run(dir, ids, expertParallel(opts)), base, `${arch} ${expertParallel(opts).name}`);
        }
      }
    }
  });
}

test('worker-thread ranks: tp2 × ep2 with the coordinated all-to-all over shared memory', async () => {
  const dir = join(FIXTURES, 'qwen2-moe');
  const ids = idsOf(dir);
  const r = await run(dir, ids, expertParallel({ size: 4, tensor: 2, placement: roundRobinPlacement(), dispatch: 'all-to-all', coordinated: true }));
  assertSame(r, await run(dir, ids), 'workers tp2×ep2 coordinated');
});

test('tp2 × ep2 plan: each rank holds half of its group\'s experts, sliced, and dense weights sliced 4 ways', async () => {
  const model = await loadModel(join(FIXTURES, 'mixtral'));
  const plan = planExpertParallel(model.graph, { size: 4, tensor: 2, placement: contiguousPlacement(), dispatch: 'all-to-all' });
  for (const [rank, { graph, shards }] of plan.ranks.entries()) {
    const experts = [...graph.weights.values()].filter((w) => w.name.includes('.experts.'));
    assert.is(experts.length, 2 * 2 * 3, '2 layers × 2 experts × 3 matrices');
    const group = Math.floor(rank / 2);
    assert.ok(experts.every((w) => w.name.includes(`.experts.${2 * group}.`) || w.name.includes(`.experts.${2 * group + 1}.`)), `rank ${rank} holds its group's experts`);
    const down = shards.find((s) => s.weight.includes('.experts.') && s.axis === 1)!;
    assert.is(down.start, (rank % 2) * down.length, 'down projection: this slice\'s columns');
    assert.ok(shards.some((s) => s.weight.includes('q_proj') && s.length === 64 / 4), 'q_proj sliced over all 4 ranks');
    const ops = graph.nodes.map((n) => n.op);
    assert.is(ops.filter((o) => o === 'moeDispatch').length, 2 * 2, 'x and routing dispatch per layer');
    assert.is(ops.filter((o) => o === 'moeCombine').length, 2);
  }
  model.weights.close();
});

test('bad options are refused with a ConfigError naming the field', async () => {
  const model = await loadModel(join(FIXTURES, 'mixtral'));
  const placement = contiguousPlacement();
  const cases: [Partial<ExpertParallelOptions>, string][] = [
    [{ size: 0 }, 'parallel.size'],
    [{ size: 4, tensor: 3 }, 'parallel.tensor'],
    [{ size: 8, tensor: 1 }, 'parallel.tensor'],
    [{ size: 4, dispatch: 'broadcast' as never }, 'parallel.dispatch'],
    [{ size: 4, dense: 'half' as never }, 'parallel.dense'],
    [{ size: 4, coordinated: true }, 'parallel.coordinated'],
    [{ size: 2, placement: { name: 'bad', place: () => new Int32Array([0, 5, 0, 0]) } }, 'parallel.placement'],
  ];
  for (const [opts, field] of cases) {
    try {
      planExpertParallel(model.graph, { placement, size: 2, ...opts });
      assert.unreachable(`expected a ConfigError for ${JSON.stringify(opts)}`);
    } catch (e) {
      assert.instance(e, ConfigError, JSON.stringify(opts));
      assert.is((e as ConfigError).info.field, field, JSON.stringify(opts));
    }
  }
  model.weights.close();
});

test.run();
