// Ranks over two node processes on loopback: this test process is RANK 0 (the engine), a child process is
// RANK 1. tp 2 × pp 2 and pp 2 give the single-process plain run's greedy tokens and logits within 1e-4;
// a follower killed mid-request fails it within seconds naming the node, and a new engine with a fresh
// follower runs again.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, ConfigError, createEngine, type ParallelStrategy } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { NodeLeader, pipelineParallel, tensorParallel, type NodeOptions } from '../src/index.js';
import { freePort, startFollower, TEST_NODE_TOKEN } from './workers/nodes.js';

const DIR = join(import.meta.dirname, '../../../fixtures/models/llama2');
const IDS = (JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')).input_ids as number[]).slice(0, 12);

async function run(parallel?: ParallelStrategy, maxTokens = 8) {
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel });
  try {
    return await engine.generate({ inputIds: IDS, maxTokens, temperature: 0, ignoreEos: true, promptLogits: true }).result;
  } finally {
    await engine.close();
  }
}

const nodesAt = (port: number, token: string | null = null): NodeOptions => ({ worldSize: 2, rank: 0, masterAddr: '127.0.0.1', masterPort: port, joinTimeoutMs: 30_000, heartbeatTimeoutMs: 3000, token });

test('tp 2 × pp 2 and pp 2 over two node processes (joined with ZINFER_NODE_TOKEN) give the plain run\'s tokens and logits; the follower serves launch after launch', async () => {
  const port = await freePort();
  const follower = startFollower(port, { token: TEST_NODE_TOKEN });
  try {
    const base = await run();
    const nodes = nodesAt(port, TEST_NODE_TOKEN);
    for (const strategy of [pipelineParallel({ stages: 2, tensorSize: 2, nodes }), pipelineParallel({ stages: 2, nodes })]) {
      const r = await run(strategy);
      assert.equal(r.tokens, base.tokens, `${strategy.name} tokens`);
      let d = 0;
      r.promptLogits!.forEach((row, p) => row.forEach((x, i) => (d = Math.max(d, Math.abs(x - base.promptLogits![p][i])))));
      assert.ok(d <= 1e-4, `${strategy.name}: logits differ by ${d}`);
    }
    assert.match(follower.stderr(), /launch \d+, ranks 2, 3[^]*ended[^]*launch \d+, ranks 1\n/);
  } finally {
    follower.child.kill();
    await follower.exit;
  }
});

test('a follower killed mid-request fails it within seconds naming the node; a new engine with a fresh follower runs', async () => {
  const port = await freePort();
  const first = startFollower(port);
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel: pipelineParallel({ stages: 2, nodes: nodesAt(port) }) });
  let killedAt = 0;
  try {
    const stream = engine.generate({ inputIds: IDS, maxTokens: 400, temperature: 0, ignoreEos: true });
    for await (const ev of stream) {
      if (ev.index === 2) {
        first.child.kill('SIGKILL');
        killedAt = Date.now();
      }
    }
    await stream.result;
    assert.unreachable('expected the request to fail');
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as Error).message, /node 1 \(rank 1 on .*\) was lost/);
    assert.ok(Date.now() - killedAt < 5000, `failed within seconds (${Date.now() - killedAt} ms)`);
  } finally {
    await engine.close();
  }
  await first.exit;
  const fresh = startFollower(port);
  try {
    const r = await run(pipelineParallel({ stages: 2, nodes: nodesAt(port) }), 4);
    assert.equal(r.tokens, (await run(undefined, 4)).tokens);
  } finally {
    fresh.child.kill();
    await fresh.exit;
  }
});

test('plans that cannot split over the nodes are refused naming the flags', async () => {
  const port = await freePort();
  for (const [strategy, field] of [
    [tensorParallel({ size: 2, nodes: { ...nodesAt(port), worldSize: 4 } }), '--nnodes'],
    [tensorParallel({ size: 4, nodes: nodesAt(port) }), '--tp / --nnodes'],
  ] as const) {
    try {
      await run(strategy);
      assert.unreachable('expected a ConfigError');
    } catch (e) {
      assert.instance(e, ConfigError);
      assert.is((e as ConfigError).info.field, field);
    }
  }
});

test.after(() => NodeLeader.closeAll());
test.run();
