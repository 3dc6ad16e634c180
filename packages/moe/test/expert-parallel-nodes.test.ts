// MoE models over two node processes on loopback (this test process is RANK 0, a child process RANK 1),
// on the reference backend. A pipeline of 2 stages (tp 1 or 2) puts the second MoE layer on the other
// node: greedy tokens equal the single-process run's and engine.expertLoad() — whose second layer the
// leader asks a remote rank for — equals its counts, over two requests. Expert parallelism over the nodes (all-reduce or all-to-all
// dispatch, `nodes` or WORLD_SIZE) is refused on host backends: its one expert group would span the
// nodes, and shared-memory collectives do not cross processes.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, createEngine, type Engine, type ParallelStrategy } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { NodeLeader, pipelineParallel, type NodeOptions } from '@zinfer/parallel';
import { freePort, startFollower, type Follower } from '../../parallel/test/workers/nodes.js';
import { contiguousPlacement, expertParallel, type ExpertParallelOptions } from '../src/index.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/moe');
const idsOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids as number[];
const started: Follower[] = [];

const nodesAt = (port: number): NodeOptions => ({ worldSize: 2, rank: 0, masterAddr: '127.0.0.1', masterPort: port, joinTimeoutMs: 30_000, heartbeatTimeoutMs: 3000 });

/** Two requests (the fixture prompt, then its first half), then the engine's routing counts. */
async function runTwice(dir: string, parallel?: ParallelStrategy) {
  const engine = await createEngine({ model: dir, backend: referenceBackend(), parallel });
  try {
    const ids = idsOf(dir);
    const gen = (e: Engine, inputIds: number[]) => e.generate({ inputIds, maxTokens: 6, temperature: 0, ignoreEos: true }).result;
    const tokens = [(await gen(engine, ids)).tokens, (await gen(engine, ids.slice(0, Math.ceil(ids.length / 2)))).tokens];
    return { tokens, load: (await engine.expertLoad!())!.map((l) => [...l]) };
  } finally {
    await engine.close();
  }
}

async function refused(dir: string, strategy: ParallelStrategy): Promise<ConfigError> {
  const e = await runTwice(dir, strategy).then(() => null, (err: unknown) => err);
  assert.instance(e, ConfigError, `${strategy.name}: expected a ConfigError, got ${String(e)}`);
  return e as ConfigError;
}

test('expert parallelism over two node processes (all-reduce, all-to-all, coordinated; `nodes` or WORLD_SIZE) is refused on host backends naming the flags', async () => {
  const port = await freePort();
  const dir = join(FIXTURES, 'mixtral');
  const ep = (o: Partial<ExpertParallelOptions>) => expertParallel({ size: 2, placement: contiguousPlacement(), nodes: nodesAt(port), ...o });
  // Refused before any node is contacted (no follower needed): the plan's one expert group would span the nodes.
  for (const strategy of [ep({}), ep({ dispatch: 'all-to-all' }), ep({ size: 4, tensor: 2, dispatch: 'all-to-all', coordinated: true })]) {
    const e = await refused(dir, strategy);
    assert.is(e.info.field, '--tp / --nnodes', strategy.name);
    assert.match(e.message, /on host backends a tensor group cannot span nodes/, strategy.name);
  }
  // Without `nodes`, the environment's WORLD_SIZE takes expert parallelism to the multi-node path too.
  const env = { WORLD_SIZE: '2', RANK: '0', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, env);
  try {
    assert.is((await refused(dir, expertParallel({ size: 2, placement: contiguousPlacement(), dispatch: 'all-to-all' }))).info.field, '--tp / --nnodes');
  } finally {
    for (const [k, v] of saved) v === undefined ? delete process.env[k] : (process.env[k] = v);
  }
});

test('2-stage pipelines (tp 1 and 2) over two node processes give the single-process tokens and expertLoad', async () => {
  const port = await freePort();
  const follower = startFollower(port);
  started.push(follower);
  try {
    for (const arch of ['mixtral', 'qwen2-moe']) {
      const base = await runTwice(join(FIXTURES, arch));
      assert.ok(base.load.length >= 2 && base.load.every((l) => l.some((x) => x > 0)), `${arch}: counts of at least two MoE layers`);
      for (const strategy of [pipelineParallel({ stages: 2, nodes: nodesAt(port) }), pipelineParallel({ stages: 2, tensorSize: 2, nodes: nodesAt(port) })]) {
        const r = await runTwice(join(FIXTURES, arch), strategy);
        assert.equal(r.tokens, base.tokens, `${arch} ${strategy.name}: greedy tokens`);
        assert.equal(r.load, base.load, `${arch} ${strategy.name}: routing counts of every MoE layer, the second's from node 1`);
      }
    }
    assert.match(follower.stderr(), /launch \d+, ranks 1\n[^]*launch \d+, ranks 2, 3\n/);
  } finally {
    follower.child.kill();
    await follower.exit;
  }
});

test.after(async () => {
  for (const f of started) if (f.child.exitCode === null && f.child.signalCode === null) f.child.kill('SIGKILL');
  await Promise.all(started.map((f) => f.exit));
  await NodeLeader.closeAll();
});
test.run();
