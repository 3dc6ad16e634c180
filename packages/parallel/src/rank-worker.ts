// The body of one rank's worker thread: joins its communicator groups (shared memory, or NCCL on its own
// GPU for backends with device collectives), re-creates the backend from its factory, reads only this
// rank's weight shards from the model directory, compiles the rank graph, then runs micro-batches in the
// order the leader sends them (one at a time: the ranks' sends and receives pair up by that order).
import { parentPort, workerData } from 'node:worker_threads';
import { HostRowSampler, loadModel, type BackendFactory, type Communicator, type Graph, type KernelBackend, type KvCacheSpec, type Program, type StepBatch, type WeightShard, type ZinferError } from '@zinfer/core';
import { announceStep, compileRank, type KvOffloadOptions } from './kv-offload/compile-rank.js';
import { rankCommunicators, type GridGroups } from './launch/groups.js';
import { joinNcclGrid, type NcclGrid } from './launch/nccl-grid.js';
import { runRank, type RankPick } from './launch/rank-pick.js';
import type { RelaySpec } from './multi-node/relay-communicator.js';
import { ShardedWeights } from './tensor-parallel/sharded-weights.js';

export interface RankInit {
  rank: number;
  factory: BackendFactory;
  graph: Graph;
  shards: WeightShard[];
  model: { dir: string; dtype?: 'f32' | 'f16' | 'bf16' };
  kvCache: KvCacheSpec;
  /** KV-cache offload: a device cache of this many blocks, the engine's pool in host memory (null: none). */
  kvOffload: KvOffloadOptions | null;
  /** Shared-memory groups (host backends), or null when the ranks use NCCL. */
  groups: GridGroups | null;
  nccl: NcclGrid | null;
  /** Whether this rank's outputs go back to the leader (the last stage's tensor rank 0). */
  returnsOutput: boolean;
  /** Host ranks of a multi-node plan: the pipeline group goes through this node's relay (its port is transferred). */
  relay: RelaySpec | null;
}

/** 'abort': a rank failed; stop using the communicators at once (NCCL: ncclCommAbort), out of turn. */
/** 'run' with `pick`: the output rank answers with token ids (rank-pick.ts); the other ranks just run (or chain, with pick.steps). */
/** 'run' with `repeat`: the rank runs the batch that many times back to back and answers with its mean ms a run. */
export type RankRequest = { type: 'run'; id: number; batch: StepBatch; pick?: RankPick; repeat?: number } | { type: 'expertLoad'; id: number } | { type: 'dispose' } | { type: 'abort' };
export type RankReply =
  | { type: 'ready' }
  | { type: 'out'; id: number; out: Float32Array | Int32Array | null; ms?: number }
  /** Program.expertLoad's counts (null when the backend keeps none), or why reading them failed. */
  | { type: 'expertLoad'; id: number; load: Float64Array[] | null; error?: string }
  | { type: 'error'; id: number; error: { name: string; code?: string; message: string } }
  | { type: 'disposed' };

interface Comms {
  communicator?: Communicator;
  pipeline?: Communicator;
}

const init = workerData as RankInit;
const host = new HostRowSampler();
const port = parentPort!;
let comms: Comms = {};
const closeAll = async () => {
  await comms.communicator?.close();
  await comms.pipeline?.close();
};
/** Shared memory: closing the groups wakes every waiting peer. NCCL: abort, since peers may be mid-collective. */
const abortAll = async () => {
  if (!init.nccl) return closeAll();
  for (const c of [comms.communicator, comms.pipeline]) (c as { abort?: () => void } | undefined)?.abort?.();
};
const fail = (id: number, e: unknown) => {
  const err = e as ZinferError;
  port.postMessage({ type: 'error', id, error: { name: err.name, code: err.code, message: err.message } } satisfies RankReply);
};

// No top-level await: the package also builds to CommonJS.
void main();

async function main(): Promise<void> {
  let program: Program;
  try {
    // NCCL groups first: a rank that failed before joining would leave its peers blocked in the join.
    comms = init.nccl ? joinNcclGrid(init.nccl, init.rank) : rankCommunicators(init.groups!, init.rank, init.relay);
    program = await compile();
  } catch (e) {
    fail(-1, e);
    await abortAll();
    process.exit(1);
  }
  port.postMessage({ type: 'ready' } satisfies RankReply);
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (m: RankRequest) => {
    if (m.type === 'abort') return void abortAll();
    if (m.type === 'run') announceStep(program, m.batch); // on arrival: its blocks may load while earlier ones run
    queue = queue.then(() => handle(program, m));
  });
}

async function compile(): Promise<Program> {
  const mod = (await import(init.factory.module)) as Record<string, (o?: unknown) => KernelBackend>;
  const backend = mod[init.factory.exportName](init.factory.options);
  const model = await loadModel(init.model.dir, { dtype: init.model.dtype });
  try {
    const source = new ShardedWeights(model.weights, init.shards, [...init.graph.weights.keys()]);
    return await compileRank(backend, init.graph, source, { kvCache: init.kvCache, ...comms }, init.kvOffload);
  } finally {
    model.weights.close();
  }
}

async function handle(program: Program, m: RankRequest): Promise<void> {
  if (m.type === 'dispose') {
    try {
      await program.dispose();
    } finally {
      await closeAll();
      port.postMessage({ type: 'disposed' } satisfies RankReply);
      port.close();
    }
    return;
  }
  if (m.type === 'expertLoad') {
    const reply = (load: Float64Array[] | null, error?: string) => port.postMessage({ type: 'expertLoad', id: m.id, load, ...(error ? { error } : {}) } satisfies RankReply);
    return program.expertLoad ? program.expertLoad().then((l) => reply(l), (e: Error) => reply(null, e.message)) : reply(null);
  }
  if (m.type !== 'run') return;
  try {
    const times = m.repeat ?? 1;
    const t0 = performance.now();
    const run = () => runRank(program, m.batch, init.returnsOutput, m.pick, host, init.kvCache.blockSize);
    let out = await run();
    for (let i = 1; i < times; i++) out = await run();
    const ms = m.repeat ? (performance.now() - t0) / times : undefined;
    port.postMessage({ type: 'out', id: m.id, out, ...(ms === undefined ? {} : { ms }) } satisfies RankReply);
  } catch (e) {
    await abortAll();
    fail(m.id, e);
  }
}
