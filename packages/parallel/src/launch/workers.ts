// Ranks in worker threads, one per rank, each owning its backend (the DeepSpeed-Inference layout: one
// process or thread per device; with a device-collectives backend, rank r owns GPU firstDevice + r and
// talks through NCCL). The leader (this thread) sends every micro-batch of a step to all ranks and returns
// the output rank's results in order. A rank that dies, fails or does not finish a step within the timeout
// fails the step with a clear error and aborts the groups, so the other ranks stop waiting; the program
// cannot run again.
import { Worker } from 'node:worker_threads';
import { BackendError, type LaunchArgs, type Program, type StepBatch } from '@zinfer/core';
import type { RankInit, RankReply, RankRequest } from '../rank-worker.js';
import { gatherExpertLoad } from './expert-load.js';
import { releaseFailedLaunch } from './failed-launch.js';
import { closeGroups, createGridGroups, outputRank } from './groups.js';
import { concat, splitBatch } from './micro-batches.js';
import { abortNcclGrid, createNcclGrid, rankFactory } from './nccl-grid.js';

interface Pending {
  /** Ranks that have not answered yet. */
  waiting: Set<number>;
  out: Float32Array | null;
  timer: ReturnType<typeof setTimeout>;
  resolve: (out: Float32Array) => void;
  reject: (e: Error) => void;
}

export interface WorkerLaunchOptions {
  /** A step not finished by every rank within this many ms fails as a hung rank (default 30 000). */
  timeoutMs?: number;
}

/** How long ranks get to abort their own NCCL communicators before the leader aborts those of stuck ranks. */
const ABORT_GRACE_MS = 1000;
/** How long a rank gets to free its device memory on dispose before it is terminated. */
const DISPOSE_GRACE_MS = 10_000;

export async function launchWorkers(args: LaunchArgs, microBatches: (batch: StepBatch) => number, opts: WorkerLaunchOptions = {}): Promise<Program> {
  const { plan, backend, kvCache, model } = args;
  const factory = backend.factory;
  if (!factory) throw new BackendError(`backend ${backend.name} cannot run in worker threads: it has no factory`, { field: 'backend.factory', expected: '{ module, exportName }', found: 'none' });
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const nccl = backend.deviceCollectives === 'nccl' ? createNcclGrid(plan, factory) : null;
  const groups = nccl ? null : createGridGroups(plan);
  const out = outputRank(plan);
  const workers = plan.ranks.map((rank, r) => spawnRank({
    rank: r, factory: nccl ? rankFactory(factory, nccl.firstDevice + r) : factory, graph: rank.graph, shards: [...rank.shards],
    model, kvCache, groups, nccl, returnsOutput: r === out,
  }));
  const pending = new Map<number, Pending>();
  /** expertLoad() requests waiting for their rank's answer. */
  const loads = new Map<number, { resolve: (l: Float64Array[] | null) => void; reject: (e: Error) => void }>();
  const exited = new Set<number>();
  let broken: Error | null = null;
  let disposed = false;
  let nextId = 1;

  const abortGroups = () => {
    if (groups) return void closeGroups(groups);
    for (const [r, w] of workers.entries()) if (!exited.has(r)) w.postMessage({ type: 'abort' } satisfies RankRequest);
    // Ranks blocked inside a collective cannot read that message: abort theirs from here.
    setTimeout(() => abortNcclGrid(nccl!), ABORT_GRACE_MS).unref();
  };
  const breakAll = (e: Error) => {
    if (broken) return;
    broken = e;
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    pending.clear();
    for (const l of loads.values()) l.reject(e);
    loads.clear();
    abortGroups();
  };

  const ready = workers.map((w, r) => new Promise<void>((resolve, reject) => {
    w.on('message', (m: RankReply) => {
      if (m.type === 'ready') return resolve();
      if (m.type === 'disposed') return;
      if (m.type === 'expertLoad') {
        const l = loads.get(m.id);
        loads.delete(m.id);
        return m.error ? l?.reject(new BackendError(`rank ${r}: ${m.error}`)) : l?.resolve(m.load);
      }
      if (m.type === 'error') {
        const e = new BackendError(`rank ${r}: ${m.error.message}`);
        reject(e);
        return breakAll(e);
      }
      const p = pending.get(m.id);
      if (!p) return;
      if (r === out) p.out = m.out;
      p.waiting.delete(r);
      if (p.waiting.size === 0) {
        clearTimeout(p.timer);
        pending.delete(m.id);
        p.resolve(p.out!);
      }
    });
    w.on('error', (e) => {
      const err = new BackendError(`rank ${r} failed: ${e.message}`);
      reject(err);
      breakAll(err);
    });
    w.on('exit', (code) => {
      exited.add(r);
      const e = new BackendError(`rank ${r} exited (code ${code})`);
      reject(e);
      if (!disposed) breakAll(e);
    });
  }));
  try {
    await Promise.all(ready);
  } catch (e) {
    disposed = true;
    await releaseFailedLaunch(workers, ready, DISPOSE_GRACE_MS);
    if (groups) await closeGroups(groups);
    throw e;
  }

  const send = (batch: StepBatch): Promise<Float32Array> => {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const waiting = new Set(workers.keys());
      const timer = setTimeout(() => {
        breakAll(new BackendError(`rank${waiting.size > 1 ? 's' : ''} ${[...waiting].join(', ')} did not finish a step within ${timeoutMs} ms: hung or stuck in a collective`, {
          field: 'parallel timeoutMs', expected: `a step within ${timeoutMs} ms`, found: `no answer from rank ${[...waiting].join(', ')}`,
        }));
      }, timeoutMs);
      pending.set(id, { waiting, out: null, timer, resolve, reject });
      for (const w of workers) w.postMessage({ type: 'run', id, batch } satisfies RankRequest);
    });
  };

  return {
    async run(batch: StepBatch): Promise<Float32Array> {
      if (broken) throw broken;
      // Every micro-batch goes out at once: stage s works on micro-batch m while stage s+1 works on m-1.
      return concat(await Promise.all(splitBatch(batch, microBatches(batch)).map(send)));
    },
    // The rank answers after the steps queued before the request: counts include every finished step.
    expertLoad: () => gatherExpertLoad(plan, (r) => {
      if (broken) return Promise.reject(broken);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        loads.set(id, { resolve, reject });
        workers[r].postMessage({ type: 'expertLoad', id } satisfies RankRequest);
      });
    }),
    async dispose() {
      if (disposed) return;
      disposed = true;
      if (broken) {
        if (nccl) abortNcclGrid(nccl);
      } else {
        // Healthy ranks free their device memory and communicators; the grace covers a stuck one.
        await Promise.all(workers.map((w, r) => exitOf(w, r, exited, () => w.postMessage({ type: 'dispose' } satisfies RankRequest))));
      }
      if (groups) await closeGroups(groups);
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/** Resolves when worker r has exited, or after the dispose grace. */
function exitOf(w: Worker, r: number, exited: Set<number>, start: () => void): Promise<void> {
  if (exited.has(r)) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, DISPOSE_GRACE_MS);
    timer.unref();
    w.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    start();
  });
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
