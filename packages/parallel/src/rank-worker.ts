// The body of one rank's worker thread: re-creates the backend from its factory, reads only this rank's
// weight shards from the model directory, compiles the rank graph, then runs micro-batches in the order
// the leader sends them (one at a time: the ranks' sends and receives pair up by that order).
import { parentPort, workerData } from 'node:worker_threads';
import { loadModel, type BackendFactory, type Graph, type KernelBackend, type KvCacheSpec, type Program, type StepBatch, type WeightShard, type ZinferError } from '@zinfer/core';
import { rankCommunicators, type GridGroups } from './launch/groups.js';
import { ShardedWeights } from './tensor-parallel/sharded-weights.js';

export interface RankInit {
  rank: number;
  factory: BackendFactory;
  graph: Graph;
  shards: WeightShard[];
  model: { dir: string; dtype?: 'f32' | 'f16' | 'bf16' };
  kvCache: KvCacheSpec;
  groups: GridGroups;
  /** Whether this rank's outputs go back to the leader (the last stage's tensor rank 0). */
  returnsOutput: boolean;
}

export type RankRequest = { type: 'run'; id: number; batch: StepBatch } | { type: 'dispose' };
export type RankReply =
  | { type: 'ready' }
  | { type: 'out'; id: number; out: Float32Array | null }
  | { type: 'error'; id: number; error: { name: string; code?: string; message: string } };

const init = workerData as RankInit;
const port = parentPort!;
const comms = rankCommunicators(init.groups, init.rank);
const closeAll = async () => {
  await comms.communicator.close();
  await comms.pipeline.close();
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
    program = await compile();
  } catch (e) {
    fail(-1, e);
    await closeAll();
    process.exit(1);
  }
  port.postMessage({ type: 'ready' } satisfies RankReply);
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (m: RankRequest) => {
    queue = queue.then(() => handle(program, m));
  });
}

async function compile(): Promise<Program> {
  const mod = (await import(init.factory.module)) as Record<string, (o?: unknown) => KernelBackend>;
  const backend = mod[init.factory.exportName](init.factory.options);
  const model = await loadModel(init.model.dir, { dtype: init.model.dtype });
  try {
    const source = new ShardedWeights(model.weights, init.shards, [...init.graph.weights.keys()]);
    return await backend.compile(init.graph, source, { kvCache: init.kvCache, ...comms });
  } finally {
    model.weights.close();
  }
}

async function handle(program: Program, m: RankRequest): Promise<void> {
  if (m.type === 'dispose') {
    await program.dispose();
    port.close();
    return;
  }
  try {
    const out = await program.run(m.batch);
    port.postMessage({ type: 'out', id: m.id, out: init.returnsOutput ? out : null } satisfies RankReply);
  } catch (e) {
    await closeAll();
    fail(m.id, e);
  }
}
