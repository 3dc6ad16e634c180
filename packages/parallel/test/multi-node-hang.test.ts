// A follower that hangs (SIGSTOP: its socket stays open, nothing answers) rather than dies: the leader's
// heartbeat on the node connection notices it and fails the pending request with a BackendError naming the
// node and its ranks; the follower, once resumed, finds the leader gone and exits; a new engine with a
// fresh follower runs. Every child is killed whatever happens.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, createEngine } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { NodeLeader, pipelineParallel, type NodeOptions } from '../src/index.js';
import { freePort, startFollower, type Follower } from './workers/nodes.js';

const DIR = join(import.meta.dirname, '../../../fixtures/models/llama2');
const IDS = (JSON.parse(readFileSync(join(DIR, 'expected.json'), 'utf8')).input_ids as number[]).slice(0, 12);
const HEARTBEAT_MS = 1500;

const nodesAt = (port: number): NodeOptions => ({ worldSize: 2, rank: 0, masterAddr: '127.0.0.1', masterPort: port, joinTimeoutMs: 30_000, heartbeatTimeoutMs: HEARTBEAT_MS });
const started: Follower[] = [];

function follower(port: number): Follower {
  const f = startFollower(port);
  started.push(f);
  return f;
}

/** Resumes (a stopped process ignores everything but SIGKILL and SIGCONT) and kills a child still running. */
function reap(f: Follower): Promise<number | null> {
  if (f.child.exitCode === null && f.child.signalCode === null) {
    f.child.kill('SIGCONT');
    f.child.kill('SIGKILL');
  }
  return f.exit;
}

/** `p`, or a failure naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function greedy(parallel: ReturnType<typeof pipelineParallel> | undefined, maxTokens: number): Promise<number[]> {
  const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel });
  try {
    return (await engine.generate({ inputIds: IDS, maxTokens, temperature: 0, ignoreEos: true }).result).tokens;
  } finally {
    await engine.close();
  }
}

test('a hung follower (SIGSTOP) fails the pending request within seconds naming the node; resumed, it exits; a fresh follower serves a new engine', async () => {
  const port = await freePort();
  const hung = follower(port);
  try {
    const engine = await createEngine({ model: DIR, backend: referenceBackend(), parallel: pipelineParallel({ stages: 2, nodes: nodesAt(port) }) });
    let stoppedAt = 0;
    let failure: unknown = null;
    try {
      const stream = engine.generate({ inputIds: IDS, maxTokens: 400, temperature: 0, ignoreEos: true });
      try {
        for await (const ev of stream) {
          if (ev.index !== 2) continue;
          hung.child.kill('SIGSTOP');
          stoppedAt = Date.now();
        }
        await stream.result;
      } catch (e) {
        failure = e;
      }
      const waited = Date.now() - stoppedAt;
      assert.ok(stoppedAt > 0, 'the request produced tokens before the follower was stopped');
      assert.instance(failure, BackendError, `expected a BackendError, got ${String(failure)}`);
      assert.match((failure as Error).message, /node 1 \(rank 1 on [^)]+\) was lost: .*no heartbeat for 1500 ms: dead or hung/);
      assert.ok(waited >= HEARTBEAT_MS - 100, `failed only after the heartbeat timeout (${waited} ms)`);
      assert.ok(waited < HEARTBEAT_MS + 3000, `failed within seconds (${waited} ms)`);
    } finally {
      await within(engine.close(), 10_000, 'closing the engine after the hung node');
    }
    // Resumed, the follower finds its connection closed by the leader in the middle of a launch: it stops its ranks and exits 1.
    hung.child.kill('SIGCONT');
    assert.is(await within(hung.exit, 10_000, 'the resumed follower exiting'), 1, hung.stderr());
    assert.match(hung.stderr(), /zinfer node 1: .* during a launch: stopping its ranks; exiting/);
  } finally {
    await reap(hung);
  }

  const fresh = follower(port);
  try {
    const tokens = await greedy(pipelineParallel({ stages: 2, nodes: nodesAt(port) }), 4);
    assert.equal(tokens, await greedy(undefined, 4));
  } finally {
    fresh.child.kill();
    await reap(fresh);
  }
});

test.after(async () => {
  await Promise.all(started.map(reap));
  await NodeLeader.closeAll();
});
test.run();
