// Ranks in worker threads, one per rank, each owning its backend (the DeepSpeed-Inference layout: one
// process or thread per device). The leader (this thread) sends every micro-batch of a step to all ranks
// and returns the output rank's results in order. A rank that dies or fails fails the step with a clear
// error and closes every group, so the other ranks stop waiting; the program cannot run again.
import { Worker } from 'node:worker_threads';
import { BackendError, type LaunchArgs, type Program, type StepBatch } from '@zinfer/core';
import type { RankInit, RankReply, RankRequest } from '../rank-worker.js';
import { closeGroups, createGridGroups, outputRank } from './groups.js';
import { concat, splitBatch } from './micro-batches.js';

interface Pending {
  replies: number;
  out: Float32Array | null;
  resolve: (out: Float32Array) => void;
  reject: (e: Error) => void;
}

export async function launchWorkers(args: LaunchArgs, microBatches: (batch: StepBatch) => number): Promise<Program> {
  const { plan, backend, kvCache, model } = args;
  const factory = backend.factory;
  if (!factory) throw new BackendError(`backend ${backend.name} cannot run in worker threads: it has no factory`, { field: 'backend.factory', expected: '{ module, exportName }', found: 'none' });
  const groups = createGridGroups(plan);
  const out = outputRank(plan);
  const workers = plan.ranks.map((rank, r) => spawnRank({ rank: r, factory, graph: rank.graph, shards: [...rank.shards], model, kvCache, groups, returnsOutput: r === out }));
  const pending = new Map<number, Pending>();
  let broken: Error | null = null;
  let disposed = false;
  let nextId = 1;

  const breakAll = (e: Error) => {
    broken ??= e;
    for (const p of pending.values()) p.reject(broken);
    pending.clear();
    void closeGroups(groups);
  };

  const ready = workers.map((w, r) => new Promise<void>((resolve, reject) => {
    w.on('message', (m: RankReply) => {
      if (m.type === 'ready') return resolve();
      if (m.type === 'error') {
        const e = new BackendError(`rank ${r}: ${m.error.message}`);
        return m.id < 0 ? reject(e) : breakAll(e);
      }
      const p = pending.get(m.id);
      if (!p) return;
      if (r === out) p.out = m.out;
      if (++p.replies === workers.length) {
        pending.delete(m.id);
        p.resolve(p.out!);
      }
    });
    w.on('error', (e) => {
      reject(e);
      breakAll(new BackendError(`rank ${r} failed: ${e.message}`));
    });
    w.on('exit', (code) => {
      const e = new BackendError(`rank ${r} exited (code ${code})`);
      reject(e);
      if (!disposed) breakAll(e);
    });
  }));
  try {
    await Promise.all(ready);
  } catch (e) {
    disposed = true;
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }

  const send = (batch: StepBatch): Promise<Float32Array> => {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { replies: 0, out: null, resolve, reject });
      for (const w of workers) w.postMessage({ type: 'run', id, batch } satisfies RankRequest);
    });
  };

  return {
    async run(batch: StepBatch): Promise<Float32Array> {
      if (broken) throw broken;
      // Every micro-batch goes out at once: stage s works on micro-batch m while stage s+1 works on m-1.
      return concat(await Promise.all(splitBatch(batch, microBatches(batch)).map(send)));
    },
    async dispose() {
      disposed = true;
      await closeGroups(groups);
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/** Starts a rank's worker: the built rank-worker.js, or through tsx when running from TypeScript sources. */
function spawnRank(init: RankInit): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const file = new URL('../rank-worker.ts', here).href;
    const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(file)}); })`;
    return new Worker(boot, { eval: true, workerData: init });
  }
  return new Worker(new URL('./rank-worker.js', here), { workerData: init });
}
