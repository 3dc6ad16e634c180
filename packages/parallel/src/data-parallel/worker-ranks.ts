// Data-parallel ranks in worker threads, one per rank (with an NCCL backend: rank r on GPU firstDevice + r,
// the fetch group an NCCL communicator, so the cuda backend all-gathers each layer on the device). The
// leader spreads each step's sequences over the ranks, posts every rank its part (an idle one a scratch
// step), and merges the outputs. A rank that fails, exits or misses the timeout breaks the program: the
// groups are aborted so no rank waits in an all-gather forever.
import { Worker } from 'node:worker_threads';
import { BackendError, ConfigError, type LaunchArgs, type OffloadPlacement, type StepBatch } from '@zinfer/core';
import { pickingProgram, type PickStep, type RankPick } from '../launch/rank-pick.js';
import { abortNcclGrid, createNcclGrid, rankFactory } from '../launch/nccl-grid.js';
import { createShmGroup } from '../shm-communicator.js';
import type { DpRankInit, DpRankReply, DpRankRequest } from './dp-rank-worker.js';
import type { DataParallelProgram } from './launch-data-parallel.js';
import { disposeRank } from '../launch/dispose-rank.js';
import { launchRanks } from '../launch/watch-ranks.js';
import { idleBatch, mergeOutputs, partPick, RankAssigner } from './rank-batches.js';

/** How long a rank gets to free its device memory (on dispose, or after a failed launch) before it is terminated. */
const DISPOSE_GRACE_MS = 10_000;

interface Call {
  resolve: (out: Float32Array | Int32Array) => void;
  reject: (e: Error) => void;
}

export async function launchDataParallelWorkers(args: LaunchArgs, size: number, timeoutMs: number): Promise<DataParallelProgram> {
  const { backend, kvCache, model, offload } = args;
  const factory = backend.factory;
  if (!factory) throw new ConfigError(`backend ${backend.name} cannot run in worker threads: it has no factory`, { field: 'backend.factory', expected: '{ module, exportName }', found: 'none' });
  if (offload && !offload.factory) throw new ConfigError(`offload ${offload.name} cannot be re-created in worker ranks: it has no factory`, { field: 'offload.factory', expected: 'weightOffload() from @zinfer/offload', found: 'none' });
  const nccl = backend.deviceCollectives === 'nccl' ? createNcclGrid({ ranks: Array.from({ length: size }, () => args.plan.ranks[0]), stages: 1 }, factory) : null;
  const shm = nccl ? null : createShmGroup(size);
  const rankCache = { ...kvCache, numBlocks: kvCache.numBlocks + 1 }; // + the scratch block of idle steps
  const workers = Array.from({ length: size }, (_, rank) => spawnRank({
    rank, size, factory: nccl ? rankFactory(factory, nccl.firstDevice + rank) : factory, offload: offload?.factory ?? null, model, kvCache: rankCache, shm, nccl,
  }));
  const calls = workers.map(() => new Map<number, Call>());
  const summaries: (readonly string[])[] = [];
  let broken: Error | null = null;
  let disposed = false;
  let nextId = 1;
  const breakAll = (e: Error) => {
    if (broken) return;
    broken = e;
    for (const c of calls) for (const call of c.values()) call.reject(e);
    for (const w of workers) w.postMessage({ type: 'abort' } satisfies DpRankRequest);
    if (nccl) setTimeout(() => abortNcclGrid(nccl), 1000).unref();
  };
  await launchRanks<DpRankReply>(workers, {
    message: (r, m) => {
      if (m.type === 'ready') {
        summaries[r] = m.summary;
        return 'ready';
      }
      if (m.type === 'error') return new BackendError(`data-parallel rank ${r}: ${m.message}`);
      if (m.type === 'out') {
        calls[r].get(m.id)?.resolve(m.out);
        calls[r].delete(m.id);
      }
      return undefined;
    },
    failed: (r, e) => new BackendError(`data-parallel rank ${r} failed: ${e.message}`),
    exited: (r, code) => new BackendError(`data-parallel rank ${r} exited (code ${code})`),
    breakAll,
    disposed: () => disposed,
  }, DISPOSE_GRACE_MS);
  const call = (r: number, batch: StepBatch, pick: RankPick | undefined): Promise<Float32Array | Int32Array> => new Promise((resolve, reject) => {
    const id = nextId++;
    calls[r].set(id, { resolve, reject });
    workers[r].postMessage({ type: 'run', id, batch, ...(pick ? { pick } : {}) } satisfies DpRankRequest);
  });
  const assigner = new RankAssigner(size);
  const idle = idleBatch(kvCache.numBlocks, kvCache.blockSize);
  const step: PickStep = async (batch, pick) => {
    if (broken) throw broken;
    const parts = assigner.split(batch);
    const timer = setTimeout(() => breakAll(new BackendError(`data-parallel ranks did not finish a step within ${timeoutMs} ms`, { field: 'parallel.timeoutMs', expected: `a step within ${timeoutMs} ms` })), timeoutMs);
    try {
      return mergeOutputs(parts, await Promise.all(workers.map((_, r) => call(r, parts[r]?.batch ?? idle, partPick(pick, parts[r])))), batch.selectedRows.length);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    placements: [],
    ...(offload ? { offload: ranksPlacement(summaries) } : {}),
    // Greedy and sampled steps bring back only each row's token id, picked in its rank (launch/rank-pick.ts).
    ...pickingProgram(step),
    async dispose() {
      if (disposed) return;
      disposed = true;
      if (!broken) await Promise.all(workers.map((w) => disposeRank(w, DISPOSE_GRACE_MS)));
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/** The engine's view of the ranks' placements: their summary lines (the weights live in the workers). */
function ranksPlacement(summaries: readonly (readonly string[])[]): OffloadPlacement {
  const [first] = summaries;
  const summary = [...first, ...summaries.slice(1).flatMap((s) => s.filter((l) => !first.includes(l)))];
  const resident = { names: () => [], get: (name: string): never => { throw new BackendError('the weights live in the data-parallel worker ranks', { tensor: name }); } };
  return { resident, stream: null, summary, timeline: () => [], close: async () => {} };
}

/** The built dp-rank-worker.js, or through tsx when running from TypeScript sources. */
function spawnRank(init: DpRankInit): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const file = new URL('./dp-rank-worker.ts', here).href;
    const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(file)}); })`;
    return new Worker(boot, { eval: true, workerData: init });
  }
  return new Worker(new URL('./data-parallel/dp-rank-worker.js', here), { workerData: init }); // dist/ holds the bundle
}
