// Ranks in worker threads of this process, one per rank, each owning its backend (the DeepSpeed-Inference
// layout: one process or thread per device; with a device-collectives backend, rank r owns GPU
// firstDevice + r and talks through NCCL). What the leader does with them (steps, timeouts, faults,
// dispose) is rank-program.ts, shared with ranks on other nodes.
import { Worker, type TransferListItem } from 'node:worker_threads';
import { BackendError, type LaunchArgs, type Program, type StepBatch } from '@zinfer/core';
import type { KvOffloadOptions } from '../kv-offload/compile-rank.js';
import type { RankInit } from '../rank-worker.js';
import { closeGroups, createGridGroups, outputRank, type GridGroups } from './groups.js';
import { abortNcclGrid, createNcclGrid, rankFactory, type NcclGrid } from './nccl-grid.js';
import { startRanks, type RankLink } from './rank-program.js';

export interface WorkerLaunchOptions {
  /** A step not finished by every rank within this many ms fails as a hung rank (default 30 000). */
  timeoutMs?: number;
  /** KV-cache offload of every rank (pipelineParallel's kvOffload). */
  kvOffload?: KvOffloadOptions | null;
}

/** How long ranks get to abort their own NCCL communicators before the leader aborts those of stuck ranks. */
export const ABORT_GRACE_MS = 1000;

export async function launchWorkers(args: LaunchArgs, microBatches: (batch: StepBatch) => number, opts: WorkerLaunchOptions = {}): Promise<Program> {
  const { plan, backend, kvCache, model } = args;
  const factory = backend.factory;
  if (!factory) throw new BackendError(`backend ${backend.name} cannot run in worker threads: it has no factory`, { field: 'backend.factory', expected: '{ module, exportName }', found: 'none' });
  const nccl = backend.deviceCollectives === 'nccl' ? createNcclGrid(plan, factory) : null;
  const groups = nccl ? null : createGridGroups(plan);
  const out = outputRank(plan);
  const workers = plan.ranks.map((rank, r) => spawnRank({
    rank: r, factory: nccl ? rankFactory(factory, nccl.firstDevice + r) : factory, graph: rank.graph, shards: [...rank.shards],
    model, kvCache, kvOffload: opts.kvOffload ?? null, groups, nccl, returnsOutput: r === out, relay: null,
  }));
  return startRanks({
    links: workers, plan, microBatches, timeoutMs: opts.timeoutMs ?? 30_000,
    leaderSpin: nccl !== null, // GPU ranks: this thread only waits on them; host ranks would lose a core
    abort: (exited) => abortRanks(workers, exited, groups, nccl),
    release: async () => {
      if (groups) await closeGroups(groups);
    },
    abandon: () => nccl && abortNcclGrid(nccl),
  });
}

/**
 * Stops a failed grid's communication: shared-memory groups close (every waiting rank wakes); NCCL ranks
 * are asked to abort their communicators, and those blocked inside a collective, which cannot read that
 * message, get theirs aborted from here after a grace.
 */
export function abortRanks(ranks: readonly RankLink[], exited: ReadonlySet<number>, groups: GridGroups | null, nccl: NcclGrid | null): void {
  if (groups) return void closeGroups(groups);
  for (const [r, w] of ranks.entries()) if (!exited.has(r)) w.postMessage({ type: 'abort' });
  if (nccl) setTimeout(() => abortNcclGrid(nccl), ABORT_GRACE_MS).unref();
}

/** Starts a rank's worker: the built rank-worker.js, or through tsx when running from TypeScript sources. */
export function spawnRank(init: RankInit, transferList: TransferListItem[] = []): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const file = new URL('../rank-worker.ts', here).href;
    const boot = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(file)}); })`;
    return new Worker(boot, { eval: true, workerData: init, transferList });
  }
  return new Worker(new URL('./rank-worker.js', here), { workerData: init, transferList });
}
