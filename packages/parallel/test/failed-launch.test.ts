import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { releaseFailedLaunch } from '../src/launch/failed-launch.js';

// A stand-in rank: says whether it was asked to dispose (flag[0] = 1) before it exits.
const RANK = `
const { parentPort, workerData } = require('node:worker_threads');
const flag = new Int32Array(workerData.flag);
parentPort.on('message', (m) => {
  if (m.type === 'dispose') { Atomics.store(flag, 0, 1); process.exit(0); }
});
`;

test('a failed launch disposes the ranks that compiled, then terminates every rank', async () => {
  const flags = [new SharedArrayBuffer(4), new SharedArrayBuffer(4)];
  const workers = flags.map((flag) => new Worker(RANK, { eval: true, workerData: { flag } }));
  const ready = [Promise.resolve(), Promise.reject(new Error('rank 1: out of GPU memory'))];
  ready[1].catch(() => {});
  const t = performance.now();
  await releaseFailedLaunch(workers, ready, 5_000);
  assert.is(new Int32Array(flags[0])[0], 1, 'the compiled rank was asked to dispose');
  assert.is(new Int32Array(flags[1])[0], 0, 'the failed rank was not');
  assert.ok(performance.now() - t < 4_000, 'no wait for the grace when every rank answered');
  assert.is(workers[1].threadId, -1, 'terminated');
});

test.run();
