// One data-parallel rank of scripts/gpu-offload-multi.mjs, in a worker thread (one GPU each): joins the
// NCCL group (cuda) or the shared-memory group (cpu mode), places the synthetic Llama with its FetchShard
// (its pinned host tier holds 1/size of every layer; size 1: the plain single-GPU stream), compiles one
// program per all-gather queue (ZINFER_SHARD_GATHER: 'gather' stream or 'copy' stream), then runs the
// steps the parent asks for, in lockstep with the other ranks, and reports times and streaming stats.
import { parentPort, workerData } from 'node:worker_threads';

const { rank, size, grid, shm, dir, env, queues, batch } = workerData;
const CPU = env.BACKEND === 'cpu';
const reply = (msg) => parentPort.postMessage({ rank, ...msg });

async function open() {
  const core = await import('@zinfer/core');
  const { stepBatch } = await import('@zinfer/core/testing');
  const { weightOffload } = await import('@zinfer/offload');
  const parallel = await import('@zinfer/parallel');
  const { repeatLayerZero, batches } = await import(env.CHILD);
  let communicator = null;
  if (grid) communicator = parallel.joinNcclGrid(grid, rank).communicator;
  else if (shm) communicator = parallel.shmCommunicator(shm, rank);
  const backend = CPU ? (await import('@zinfer/kernels/cpu')).cpuBackend({ threads: 1 }) : (await import('@zinfer/kernels/cuda')).cudaBackend({ device: rank, activations: 'f16' });
  const model = await core.loadModel(dir);
  const weights = repeatLayerZero(model.weights, core.layerOfWeight);
  const t0 = performance.now();
  const shard = size > 1 ? { shard: { rank, size, communicator } } : {};
  const placement = await weightOffload({ tier: 'host', prefetch: env.PREFETCH }).place({ graph: model.graph, weights, backend, ...shard });
  const placeS = (performance.now() - t0) / 1000;
  const vocab = model.spec?.vocabSize ?? env.VOCAB;
  const steps = batches(stepBatch, batch, env.PROMPT, vocab);
  const programs = {};
  const t1 = performance.now();
  for (const q of queues) {
    process.env.ZINFER_SHARD_GATHER = q; // read when the program opens its streamed weights
    programs[q] = await backend.compile(model.graph, placement.resident, { kvCache: { numBlocks: steps.blocks + 4, blockSize: 16 }, ...(placement.stream ? { stream: placement.stream } : {}) });
  }
  const compileS = (performance.now() - t1) / 1000;
  const streamedBytes = (placement.stream?.groups.flat() ?? []).reduce((s, n) => s + model.graph.weights.get(n).shape.reduce((a, b) => a * b, 1) * 2, 0);
  const params = [...model.graph.weights.values()].reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
  return { model, placement, programs, steps, communicator, placeS, compileS, streamedBytes, params };
}

let state = null;
parentPort.on('message', async (msg) => {
  try {
    if (msg.op === 'h2d') {
      // Each GPU alone or all at once (the parent starts every rank together): median of many rounds, so
      // the rate is the one while the others copy too.
      const cuda = await import('@zinfer/kernels/cuda');
      const r = await cuda.pinnedCopyProbe(rank, { bytes: 1 << 30, rounds: msg.rounds });
      const sorted = [...r.samples].sort((a, b) => a - b);
      reply({ op: 'h2d', best: r.pinnedGbPerS, median: sorted[Math.floor(sorted.length / 2)] });
    } else if (msg.op === 'open') {
      state = await open();
      reply({ op: 'ready', params: state.params, placeS: state.placeS, compileS: state.compileS, streamedBytes: state.streamedBytes, summary: state.placement.summary });
    } else if (msg.op === 'run') {
      const program = state.programs[msg.queue];
      const t = performance.now();
      const out = program.runArgmax ? await program.runArgmax(state.steps[msg.kind]) : await program.run(state.steps[msg.kind]);
      const s = (performance.now() - t) / 1000;
      const stats = program.streamStats ?? null;
      const timeline = stats?.timeline ?? state.placement.timeline();
      reply({ op: 'ran', s, rows: out.length, stats: stats && { copiedBytes: stats.copiedBytes, gatheredBytes: stats.gatheredBytes, shardCopyMs: stats.shardCopyMs, gatherMs: stats.gatherMs }, timeline: timeline.slice(-4 * 200) });
      state.placement.timeline().length = 0;
    } else if (msg.op === 'close') {
      for (const p of Object.values(state?.programs ?? {})) await p.dispose();
      await state?.placement.close();
      state?.model.weights.close();
      reply({ op: 'closed' });
    }
  } catch (e) {
    reply({ op: 'error', error: `${e?.stack ?? e}`.slice(0, 3000) });
  }
});
