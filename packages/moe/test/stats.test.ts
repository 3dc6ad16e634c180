// Routing statistics (Program.expertLoad through the engine and the parallel launchers) and load-aware
// re-planning: the engine's counts equal a hand count of the routers' top-k on the fixture prompt, every
// launcher reports the same counts, and a relaunch under a re-planned placement changes the placement
// and not the output.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BusyError, createEngine, loadModel, type Engine, type ParallelStrategy } from '@zinfer/core';
import { stepBatch } from '@zinfer/core/testing';
import { referenceBackend } from '@zinfer/kernels/reference';
import { contiguousPlacement, expertImbalance, expertParallel, expertReplanner, rankImbalance } from '../src/index.js';

const DIR = join(import.meta.dirname, '../../../fixtures/moe/mixtral');
const IDS = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')).input_ids as number[];
const NEW = 6;

async function generate(engine: Engine) {
  return (await engine.generate({ inputIds: IDS, maxTokens: NEW, temperature: 0, ignoreEos: true }).result).tokens;
}

async function withEngine<T>(parallel: ParallelStrategy | undefined, body: (e: Engine) => Promise<T>): Promise<T> {
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel });
  try {
    return await body(engine);
  } finally {
    await engine.close();
  }
}

/** Each router's top-k ids for every row of one prefill of `tokens`, counted by hand. */
async function handCount(tokens: number[]): Promise<number[][]> {
  const model = await loadModel(DIR);
  const routers = model.graph.nodes.filter((n) => n.op === 'moeRouter');
  const counts: number[][] = [];
  for (const router of routers) {
    const { topK, experts } = router.attrs as { topK: number; experts: number };
    // The same graph with the router's output as the graph's output: [rows, 2·topK] (ids, then weights).
    const program = await referenceBackend().compile({ ...model.graph, output: router.output }, model.weights, { kvCache: { numBlocks: 4, blockSize: 16 } });
    const routing = await program.run(stepBatch([{ tokens, cached: 0, blocks: [0, 1, 2, 3] }], 16, 'all'));
    const c = new Array<number>(experts).fill(0);
    for (let r = 0; r < tokens.length; r++) for (let k = 0; k < topK; k++) c[routing[r * 2 * topK + k]]++;
    counts.push(c);
  }
  model.weights.close();
  return counts;
}

test('engine.expertLoad equals a hand count of the routers on the fixture prompt', async () => {
  const { tokens, load } = await withEngine(undefined, async (e) => ({ tokens: await generate(e), load: await e.expertLoad!() }));
  // Rows the engine routed: the prompt, then every generated token but the last (it is never fed back).
  const fed = [...IDS, ...tokens.slice(0, NEW - 1)];
  const hand = await handCount(fed);
  assert.equal(load!.map((l) => [...l]), hand);
  for (const l of load!) assert.is(l.reduce((a, b) => a + b, 0), fed.length * 2, 'each routed row counts once per expert of its top 2');
});

test('inline and worker-thread expert-parallel ranks (sliced, all-to-all, replicated too) report the same counts as one device', async () => {
  const plain = await withEngine(undefined, async (e) => (await generate(e), (await e.expertLoad!())!.map((l) => [...l])));
  for (const ranks of ['inline', 'workers'] as const) {
    const load = await withEngine(expertParallel({ size: 2, placement: contiguousPlacement(), ranks }), async (e) => (await generate(e), await e.expertLoad!()));
    assert.equal(load!.map((l) => [...l]), plain, ranks);
  }
  // Expert slicing and all-to-all dispatch: rank 0 still routes every token of the step.
  for (const opts of [{ size: 4, tensor: 2 }, { size: 2, dispatch: 'all-to-all' as const }, { size: 4, dense: 'replicated' as const }]) {
    const load = await withEngine(expertParallel({ ...opts, placement: contiguousPlacement(), ranks: 'inline' }), async (e) => (await generate(e), await e.expertLoad!()));
    assert.equal(load!.map((l) => [...l]), plain, JSON.stringify(opts));
  }
});

test('replan: the load-aware placement from the statistics takes effect, counts carry over, tokens stay identical', async () => {
  const moe = expertReplanner({ size: 2, placement: contiguousPlacement(), ranks: 'inline' });
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel: moe.strategy() });
  try {
    const before = await generate(engine);
    const load = (await engine.expertLoad!())!;
    const experts = load.map((l) => l.length);
    assert.equal(moe.owners(experts).map((o) => [...o]), [[0, 0, 1, 1], [0, 0, 1, 1]]);
    const next = moe.replan(load);
    await engine.relaunch!(next.strategy);
    next.adopt();
    const owners = moe.owners(experts);
    assert.not.equal(owners.map((o) => [...o]), [[0, 0, 1, 1], [0, 0, 1, 1]], 'the placement changed');
    assert.is(moe.placement.name, 'load-aware');
    owners.forEach((o, l) => assert.ok(rankImbalance(load[l], o, 2) <= rankImbalance(load[l], Int32Array.from([0, 0, 1, 1]), 2) + 1e-9, `layer ${l} is no worse balanced`));
    assert.equal(await generate(engine), before, 'the same greedy tokens under the new placement');
    const after = (await engine.expertLoad!())!;
    after.forEach((l, i) => l.forEach((x, e) => assert.is(x, 2 * load[i][e], 'counts carry over the relaunch (the same request twice)')));
  } finally {
    await engine.close();
  }
});

test('relaunch refuses while a request runs (BusyError) and without a parallel strategy', async () => {
  const moe = expertReplanner({ size: 2, placement: contiguousPlacement(), ranks: 'inline' });
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel: moe.strategy(), autoStep: false });
  try {
    const gen = engine.generate({ inputIds: IDS, maxTokens: 4, temperature: 0, ignoreEos: true });
    await engine.step();
    await rejects(engine.relaunch!(moe.strategy()), (e) => e instanceof BusyError && e.code === 'E_BUSY' && /1 running/.test(e.message), 'busy');
    while (!(await engine.step()).finished);
    await gen.result;
    await engine.relaunch!(moe.strategy()); // idle: fine
  } finally {
    await engine.close();
  }
  await withEngine(undefined, (e) => rejects(e.relaunch!(moe.strategy()), (err) => /parallel strategy/.test(String(err)), 'single device'));
});

async function rejects(p: Promise<unknown>, check: (e: unknown) => boolean, what: string): Promise<void> {
  const e = await p.then(() => null, (err: unknown) => err ?? new Error('rejected with nothing'));
  assert.ok(e !== null && check(e), `${what}: ${e === null ? 'did not reject' : String(e)}`);
}

test('imbalance: max over mean of the experts and of the ranks', () => {
  assert.is(expertImbalance(new Float64Array([6, 2, 2, 2])), 2);
  assert.is(expertImbalance(new Float64Array(4)), 0);
  assert.is(rankImbalance(new Float64Array([6, 2, 2, 2]), Int32Array.from([0, 0, 1, 1]), 2), 8 / 6);
});

test.run();
