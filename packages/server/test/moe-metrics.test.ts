// Routing statistics on /metrics and POST /admin/moe/replan over a real loopback server, on the tiny
// Mixtral fixture with two expert-parallel ranks: the counters equal the engine's counts, a replan needs
// the API key, is refused (409) while a request runs, and when idle switches to the load-aware placement
// (visible in the reply and in /metrics) with identical greedy output.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createEngine, type Engine } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { contiguousPlacement, expertReplanner } from '@zinfer/moe';
import { replannerFromFlags } from '../src/moe-replan.js';
import { parallelFromFlags } from '../src/parallel-flags.js';
import { serve } from './helpers/server.js';

const DIR = join(import.meta.dirname, '../../../fixtures/moe/mixtral');
const IDS = JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')).input_ids as number[];
const KEY = 'moe-key';

/** Runs one greedy request to the end by stepping the engine (autoStep is off, so the test decides when requests run). */
async function generate(engine: Engine): Promise<number[]> {
  const gen = engine.generate({ inputIds: IDS, maxTokens: 6, temperature: 0, ignoreEos: true });
  while ((await engine.step()).tokens > 0);
  return (await gen.result).tokens;
}

/** `name{labels} value` lines of one metric, as [labels, value]. */
async function scrape(url: string, name: string): Promise<[Record<string, string>, number][]> {
  const text = await (await fetch(`${url}metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(`${name}{`)).map((l) => {
    const [, labels, value] = /^[^{]+\{([^}]*)\} (\S+)$/.exec(l)!;
    return [Object.fromEntries(labels.split(',').map((kv) => kv.split('=')).map(([k, v]) => [k, JSON.parse(v)])), Number(value)];
  });
}

const replan = (url: string, key?: string) => fetch(`${url}admin/moe/replan`, { method: 'POST', headers: key ? { authorization: `Bearer ${key}` } : {} });

test('/metrics shows the routed tokens; /admin/moe/replan re-plans when idle and output stays identical', async () => {
  const moe = expertReplanner({ size: 2, placement: contiguousPlacement(), ranks: 'inline' });
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel: moe.strategy(), autoStep: false });
  const server = await serve(engine, { apiKey: KEY, moe });
  try {
    const before = await generate(engine);
    const load = (await engine.expertLoad!())!;
    const tokens = await scrape(server.url, 'zinfer_moe_expert_tokens_total');
    assert.is(tokens.length, load.length * load[0].length, 'one series per layer and expert');
    for (const [{ layer, expert }, v] of tokens) assert.is(v, load[Number(layer)][Number(expert)], `layer ${layer} expert ${expert}`);
    const imbalance = await scrape(server.url, 'zinfer_moe_expert_imbalance');
    imbalance.forEach(([{ layer }, v]) => assert.ok(Math.abs(v - Math.max(...load[Number(layer)]) / (load[Number(layer)].reduce((a, b) => a + b) / 4)) < 1e-9));
    assert.ok((await scrape(server.url, 'zinfer_moe_expert_group')).every(([l]) => l.placement === 'contiguous'));

    assert.is((await replan(server.url)).status, 401, 'the API key is needed');
    const running = engine.generate({ inputIds: IDS, maxTokens: 3, temperature: 0, ignoreEos: true });
    const busy = await replan(server.url, KEY);
    assert.is(busy.status, 409);
    assert.is(((await busy.json()) as { error: { code: string } }).error.code, 'E_BUSY');
    while ((await engine.step()).tokens > 0);
    await running.result;

    const loadNow = (await engine.expertLoad!())!;
    const res = await replan(server.url, KEY);
    assert.is(res.status, 200);
    const body = (await res.json()) as { placement: string; groups: number[][]; previous: { placement: string; groups: number[][] }; load: number[][] };
    assert.is(body.placement, 'load-aware');
    assert.equal(body.previous, { placement: 'contiguous', groups: [[0, 0, 1, 1], [0, 0, 1, 1]] });
    assert.equal(body.load, loadNow.map((l) => [...l]));
    assert.not.equal(body.groups, body.previous.groups, 'the placement changed');
    const groups = await scrape(server.url, 'zinfer_moe_expert_group');
    for (const [{ layer, expert, placement }, v] of groups) {
      assert.is(placement, 'load-aware');
      assert.is(v, body.groups[Number(layer)][Number(expert)]);
    }
    assert.equal(await generate(engine), before, 'identical greedy tokens under the new placement');
    const after = await scrape(server.url, 'zinfer_moe_expert_tokens_total');
    const total = after.reduce((s, [, v]) => s + v, 0);
    assert.ok(total > tokens.reduce((s, [, v]) => s + v, 0), 'the counters keep counting across the relaunch');
  } finally {
    await server.close();
    await engine.close();
  }
});

test('a server without expert parallelism answers the replan with 409 and shows no MoE series', async () => {
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), autoStep: false });
  const server = await serve(engine);
  try {
    await generate(engine);
    assert.ok((await scrape(server.url, 'zinfer_moe_expert_tokens_total')).length > 0, 'a single-device MoE engine still counts');
    assert.is((await scrape(server.url, 'zinfer_moe_expert_group')).length, 0);
    const res = await replan(server.url);
    assert.is(res.status, 409);
    assert.is(((await res.json()) as { error: { code: string; param: string } }).error.param, 'parallel');
    assert.is((await fetch(`${server.url}admin/moe/replan`)).status, 405);
  } finally {
    await server.close();
    await engine.close();
  }
});

test('zinfer serve --ep: the replanner builds the strategy the flags chose; other strategies get none', () => {
  for (const flags of [{ tp: 1, pp: 1, ep: 2 }, { tp: 2, pp: 1, ep: 2 }, { tp: 1, pp: 1, ep: 4, epDispatch: 'all-to-all' as const, epCoordinated: false }]) {
    const parallel = parallelFromFlags(flags);
    assert.is(replannerFromFlags(flags, parallel)?.strategy().name, parallel!.name, JSON.stringify(flags));
  }
  assert.is(replannerFromFlags({ ep: 1 }, parallelFromFlags({ tp: 2, pp: 1, ep: 1 })), undefined);
});

test.run();
