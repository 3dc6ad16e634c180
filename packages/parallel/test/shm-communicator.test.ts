import { Worker } from 'node:worker_threads';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createShmGroup, shmCommunicator } from '../src/shm-communicator.js';

/** A worker thread running a TypeScript file (Node 20 workers do not inherit tsx's loader hooks). */
function tsWorker(file: URL, workerData: unknown): Worker {
  const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(file.href)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

/** Runs fn on every rank of a group at once (all ranks on this thread: the collectives are async). */
async function onRanks<T>(size: number, fn: (rank: number, comm: ReturnType<typeof shmCommunicator>) => Promise<T>, slotBytes?: number): Promise<T[]> {
  const group = createShmGroup(size, { slotBytes });
  return Promise.all(Array.from({ length: size }, (_, r) => fn(r, shmCommunicator(group, r))));
}

test('allReduce sums (and maxes) identically on every rank, in chunks larger than a slot', async () => {
  for (const size of [1, 2, 3, 4]) {
    const n = 1000; // with 256-byte slots: 64 floats per slot, so 16 chunks
    const out = await onRanks(size, async (r, c) => {
      const buf = Float32Array.from({ length: n }, (_, i) => Math.sin(i + r) * (r + 1));
      await c.allReduce(buf);
      return buf;
    }, 256);
    for (let i = 0; i < n; i++) {
      let want = Math.fround(Math.sin(i) * 1);
      for (let r = 1; r < size; r++) want = Math.fround(want + Math.fround(Math.sin(i + r) * (r + 1)));
      for (const b of out) assert.is(b[i], want, `size ${size} element ${i}`);
    }
  }
  const max = await onRanks(3, async (r, c) => {
    const buf = Float32Array.of(r, -r, 5);
    await c.allReduce(buf, 'max');
    return [...buf];
  });
  for (const m of max) assert.equal(m, [2, 0, 5]);
});

test('allGather concatenates in rank order', async () => {
  const out = await onRanks(3, async (r, c) => {
    const recv = new Float32Array(6);
    await c.allGather(Float32Array.of(r, r + 0.5), recv);
    return [...recv];
  });
  for (const o of out) assert.equal(o, [0, 0.5, 1, 1.5, 2, 2.5]);
});

test('allToAll exchanges uneven counts', async () => {
  // rank r sends (dst + 1) values of 10*r + dst to each dst.
  const size = 3;
  const out = await onRanks(size, async (r, c) => {
    const sendCounts = [1, 2, 3];
    const send = Float32Array.from(sendCounts.flatMap((n, dst) => new Array(n).fill(10 * r + dst)));
    const recvCounts = [r + 1, r + 1, r + 1];
    const recv = new Float32Array(3 * (r + 1));
    await c.allToAll(send, recv, sendCounts, recvCounts);
    return [...recv];
  });
  out.forEach((o, r) => assert.equal(o, [0, 10, 20].flatMap((base) => new Array(r + 1).fill(base + r))));
});

test('send/recv deliver in order, and a wrong-size receive is a clear error', async () => {
  const [, got] = await onRanks(2, async (r, c) => {
    if (r === 0) {
      for (let i = 0; i < 5; i++) await c.send(Float32Array.of(i, i * 2), 1);
      return [];
    }
    const seen: number[][] = [];
    for (let i = 0; i < 5; i++) {
      const b = new Float32Array(2);
      await c.recv(b, 0);
      seen.push([...b]);
    }
    return seen;
  });
  assert.equal(got, [0, 1, 2, 3, 4].map((i) => [i, i * 2]));
  const group = createShmGroup(2);
  const [a, b] = [shmCommunicator(group, 0), shmCommunicator(group, 1)];
  await a.send(Float32Array.of(1, 2, 3), 1);
  try {
    await b.recv(new Float32Array(2), 0);
    assert.unreachable('expected an error');
  } catch (e) {
    assert.match((e as Error).message, 'message of 3 values, buffer of 2');
  }
});

test('ranks in worker threads all-reduce through the same shared memory', async () => {
  const size = 3;
  const group = createShmGroup(size, { slotBytes: 1024 });
  const length = 700; // three chunks of 256 floats
  const results = await Promise.all(
    Array.from({ length: size }, (_, rank) => new Promise<Float32Array>((resolve, reject) => {
      const w = tsWorker(new URL('./workers/allreduce-worker.ts', import.meta.url), { group, rank, length });
      w.once('message', (m: Float32Array) => {
        resolve(m);
        void w.terminate();
      });
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`rank ${rank} exited with code ${code} before answering`)));
    })),
  );
  for (let i = 0; i < length; i++) {
    const want = Math.fround(Math.fround(Math.fround(0.5 + i * 1e-3) + Math.fround(1 + i * 1e-3)) + Math.fround(1.5 + i * 1e-3));
    for (const r of results) assert.is(r[i], want, `element ${i}`);
  }
});

test('a rank whose peer never arrives gets a clear error within its timeout', async () => {
  const group = createShmGroup(2, { timeoutMs: 300 });
  const t0 = Date.now();
  try {
    await shmCommunicator(group, 0).allReduce(new Float32Array(4));
    assert.unreachable('expected a timeout');
  } catch (e) {
    assert.match((e as Error).message, 'a peer rank died or hung');
    assert.ok(Date.now() - t0 < 2000);
  }
});

test.run();
