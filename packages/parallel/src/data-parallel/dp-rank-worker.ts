// The body of one data-parallel worker rank: joins the fetch group (NCCL on its own GPU, or shared memory),
// re-creates the backend and the offload from their factories, places the weights with its FetchShard
// (1/size of every streamed layer in its tier), compiles the whole graph, then runs the steps the leader
// sends it, one at a time and in order (the all-gathers of the ranks pair up by that order).
import { parentPort, workerData } from 'node:worker_threads';
import { HostRowSampler, loadModel, type BackendFactory, type Communicator, type KernelBackend, type KvCacheSpec, type OffloadPlacement, type Program, type StepBatch, type WeightOffload } from '@zinfer/core';
import { joinNcclGrid, type NcclGrid } from '../launch/nccl-grid.js';
import { runPicked, type RankPick } from '../launch/rank-pick.js';
import { shmCommunicator, type ShmGroup } from '../shm-communicator.js';

export interface DpRankInit {
  rank: number;
  size: number;
  factory: BackendFactory;
  offload: BackendFactory | null;
  model: { dir: string; dtype?: 'f32' | 'f16' | 'bf16' };
  kvCache: KvCacheSpec;
  shm: ShmGroup | null;
  nccl: NcclGrid | null;
}

/** 'run' with `pick`: the rank answers with its rows' token ids (launch/rank-pick.ts). */
export type DpRankRequest = { type: 'run'; id: number; batch: StepBatch; pick?: RankPick } | { type: 'dispose' } | { type: 'abort' };
export type DpRankReply =
  | { type: 'ready'; summary: readonly string[] }
  | { type: 'out'; id: number; out: Float32Array | Int32Array }
  | { type: 'error'; id: number; message: string }
  | { type: 'disposed' };

const init = workerData as DpRankInit;
const host = new HostRowSampler();
const port = parentPort!;
let comm: Communicator | undefined;
let placement: OffloadPlacement | null = null;
const post = (m: DpRankReply) => port.postMessage(m);
/** NCCL peers may be inside a collective: abort; shared memory: closing wakes them. */
const abort = async () => {
  const c = comm as (Communicator & { abort?: () => void }) | undefined;
  if (c?.abort) c.abort();
  else await c?.close();
};

void main(); // no top-level await: the package also builds to CommonJS

async function main(): Promise<void> {
  let program: Program;
  try {
    comm = init.nccl ? joinNcclGrid(init.nccl, init.rank).communicator : shmCommunicator(init.shm!, init.rank);
    program = await compile();
  } catch (e) {
    post({ type: 'error', id: -1, message: (e as Error).message });
    await abort();
    process.exit(1);
  }
  post({ type: 'ready', summary: placement?.summary ?? [] });
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (m: DpRankRequest) => {
    if (m.type === 'abort') return void abort();
    queue = queue.then(() => handle(program, m));
  });
}

async function compile(): Promise<Program> {
  const make = async <T>(f: BackendFactory) => ((await import(f.module)) as Record<string, (o?: unknown) => T>)[f.exportName](f.options);
  const backend = await make<KernelBackend>(init.factory);
  const model = await loadModel(init.model.dir, { dtype: init.model.dtype });
  try {
    if (init.offload) {
      const offload = await make<WeightOffload>(init.offload);
      placement = await offload.place({ graph: model.graph, weights: model.weights, backend, shard: { rank: init.rank, size: init.size, communicator: comm! } });
    }
    return await backend.compile(model.graph, placement?.resident ?? model.weights, { kvCache: init.kvCache, ...(placement?.stream ? { stream: placement.stream } : {}) });
  } finally {
    model.weights.close();
  }
}

async function handle(program: Program, m: DpRankRequest): Promise<void> {
  if (m.type === 'dispose') {
    try {
      await program.dispose();
      await placement?.close();
    } finally {
      await comm?.close();
      post({ type: 'disposed' });
      port.close();
    }
    return;
  }
  if (m.type !== 'run') return;
  try {
    post({ type: 'out', id: m.id, out: m.pick ? await runPicked(program, m.batch, m.pick, host) : await program.run(m.batch) });
  } catch (e) {
    await abort();
    post({ type: 'error', id: m.id, message: (e as Error).message });
  }
}

