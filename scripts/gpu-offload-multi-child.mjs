// The child-process parts of scripts/gpu-offload-multi.mjs: H2D probes (each GPU alone, all at once), the
// forward on N data-parallel ranks (worker threads of scripts/gpu-offload-multi-rank.mjs, stepped in
// lockstep: a step's time is from posting it to every rank until the last rank answers), and the disk probe.
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

const RANK = join(import.meta.dirname, 'gpu-offload-multi-rank.mjs');

class Ranks {
  constructor(size, data) {
    this.workers = Array.from({ length: size }, (_, rank) => new Worker(RANK, { workerData: { rank, size, ...data } }));
  }

  /** Posts `msg` to every rank; resolves with their replies in rank order (rejects on any rank's error). */
  all(msg) {
    return Promise.all(this.workers.map((w) => new Promise((resolve, reject) => {
      const onMessage = (m) => {
        w.off('message', onMessage);
        w.off('error', reject);
        if (m.op === 'error') reject(new Error(`rank ${m.rank}: ${m.error}`));
        else resolve(m);
      };
      w.on('message', onMessage);
      w.once('error', reject);
      w.postMessage(msg);
    })));
  }

  async timed(msg) {
    const t = performance.now();
    const replies = await this.all(msg);
    return { wallS: (performance.now() - t) / 1000, replies };
  }

  terminate() {
    return Promise.all(this.workers.map((w) => w.terminate()));
  }
}

async function card() {
  const cuda = await import('@zinfer/kernels/cuda');
  return (await cuda.cudaBackend().probe())?.description ?? null;
}

async function forward(args, env) {
  const core = await import('@zinfer/core');
  const parallel = await import('@zinfer/parallel');
  const { llamaConfig, overlapOf } = await import(env.CHILD);
  const cpu = env.BACKEND === 'cpu';
  const n = args.ranks;
  const dir = core.writeSyntheticModel(join(env.WORK, `synthetic-multi-${env.SHAPE.join('x')}`), llamaConfig(env.SHAPE), { seed: 1, dtype: 'f16', std: 0.02 });
  const plan = { ranks: Array.from({ length: n }, () => ({ graph: null, shards: [] })), stages: 1 };
  const grid = !cpu && n > 1 ? parallel.createNcclGrid(plan, { module: '@zinfer/kernels/cuda', exportName: 'cudaBackend', options: { device: 0 } }) : null;
  const shm = cpu && n > 1 ? parallel.createShmGroup(n) : null;
  const ranks = new Ranks(n, { grid, shm, dir, env, queues: args.queues, batch: env.BATCH });
  try {
    const ready = await ranks.all({ op: 'open' });
    const streamedBytes = ready[0].streamedBytes;
    const runs = {};
    for (const queue of args.queues) {
      await ranks.all({ op: 'run', queue, kind: 'prompt' }); // warm-up: kernels, buffers, first touch of the tier
      const p = await ranks.timed({ op: 'run', queue, kind: 'prompt' });
      const r0 = p.replies[0];
      const ov = overlapOf(r0.timeline, streamedBytes / n);
      runs[queue] = { s: p.wallS, rankS: p.replies.map((r) => r.s), ...(r0.stats ?? {}), ...ov };
    }
    await ranks.all({ op: 'close' });
    return { card: cpu ? null : await card(), ranks: n, placeS: Math.max(...ready.map((r) => r.placeS)), compileS: Math.max(...ready.map((r) => r.compileS)), streamedBytes, params: ready[0].params, summary: ready.map((r) => r.summary), runs };
  } finally {
    await ranks.terminate();
  }
}

async function h2d(args, together) {
  const each = [];
  if (together) {
    const ranks = new Ranks(args.gpus, { env: {} });
    try {
      const replies = await ranks.all({ op: 'h2d', rounds: 40 });
      return { card: await card(), each: replies.map((r) => r.median), best: replies.map((r) => r.best) };
    } finally {
      await ranks.terminate();
    }
  }
  const cuda = await import('@zinfer/kernels/cuda');
  for (let d = 0; d < args.gpus; d++) each.push((await cuda.pinnedCopyProbe(d, { bytes: 1 << 30, rounds: 5 })).pinnedGbPerS);
  return { card: await card(), each };
}

/**
 * The engine path (createEngine + dataParallel + weightOffload, worker ranks, NCCL fetch group) on the
 * fixtures: one sequence (it runs on rank 0 with the single-GPU step's exact batch, the other ranks idle)
 * must give the resident single-GPU tokens and prompt logits bit for bit; three concurrent ones their tokens.
 */
async function engineParity(args, env) {
  const { createEngine } = await import('@zinfer/core');
  const { dataParallel } = await import('@zinfer/parallel');
  const { weightOffload } = await import('@zinfer/offload');
  const cpu = env.BACKEND === 'cpu';
  const make = async () => (cpu ? (await import('@zinfer/kernels/cpu')).cpuBackend({ threads: 1 }) : (await import('@zinfer/kernels/cuda')).cudaBackend());
  const out = {};
  for (const model of args.models) {
    const dir = join(import.meta.dirname, '..', 'fixtures/models', model);
    const ids = JSON.parse((await import('node:fs')).readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids;
    const gen = async (parallel, offload) => {
      const e = await createEngine({ model: dir, backend: await make(), limits: { maxSequences: 4, kvCacheBytes: 2 ** 24 }, ...(parallel ? { parallel, offload } : {}) });
      try {
        const one = await e.generate({ inputIds: ids, maxTokens: 8, temperature: 0, promptLogits: true }).result;
        const many = await Promise.all([ids, ids.slice(0, 3), ids.slice(1)].map((x) => e.generate({ inputIds: x, maxTokens: 6, temperature: 0 }).result));
        return { one, many, summary: e.offload?.summary ?? [] };
      } finally {
        await e.close();
      }
    };
    try {
      const want = await gen(null);
      const got = await gen(dataParallel({ size: args.gpus, ...(cpu ? { ranks: 'workers' } : {}) }), weightOffload({ tier: 'host', prefetch: 1 }));
      let maxDiff = 0;
      want.one.promptLogits.forEach((row, i) => row.forEach((x, j) => (maxDiff = Math.max(maxDiff, Math.abs(x - got.one.promptLogits[i][j])))));
      const same = JSON.stringify(got.one.tokens) === JSON.stringify(want.one.tokens) && maxDiff === 0;
      const manySame = got.many.every((r, i) => JSON.stringify(r.tokens) === JSON.stringify(want.many[i].tokens));
      out[model] = { identical: same, concurrentTokensIdentical: manySame, promptLogitsMaxAbsDiff: maxDiff, tokens: got.one.tokens, wantTokens: want.one.tokens, summary: got.summary };
    } catch (e) {
      out[model] = { error: `${e?.message ?? e}`.slice(0, 1500) };
    }
  }
  return out;
}

export async function runMultiChild(name, args, env) {
  if (name === 'engine') return engineParity(args, env);
  if (name === 'forward') return forward(args, env);
  if (name === 'h2d-each') return h2d(args, false);
  if (name === 'h2d-all') return h2d(args, true);
  throw new Error(`unknown child ${name}`);
}

/** Runs dd with O_DIRECT over [skip, skip + count) MiB-blocks of the file; resolves with its exit code. */
function dd(file, blockMiB, skip, count) {
  return new Promise((resolve) => {
    const p = spawn('dd', [`if=${file}`, 'of=/dev/null', `bs=${blockMiB}M`, `skip=${skip}`, `count=${count}`, 'iflag=direct'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code, err: err.trim().split('\n').pop() }));
  });
}

/**
 * Disk read bandwidth with O_DIRECT (no page cache): writes `gb` GB, then reads it with one dd and with
 * `readers` dd's in parallel on disjoint ranges (the tier's reader keeps several reads in flight too).
 */
export async function diskProbe(dir, gb, readers, limitS) {
  const file = join(dir, 'probe.bin');
  const block = 8 << 20;
  const blocks = Math.max(readers, Math.round((gb * 1e9) / block));
  const fd = openSync(file, 'w');
  const buf = Buffer.alloc(block, 0x5a);
  for (let i = 0; i < blocks; i++) writeSync(fd, buf);
  closeSync(fd);
  const bytes = blocks * block;
  const deadline = performance.now() + limitS * 1000;
  let t = performance.now();
  const one = await dd(file, 8, 0, blocks);
  const singleS = (performance.now() - t) / 1000;
  if (performance.now() > deadline) return { bytes, singleGbPerS: bytes / singleS / 1e9, parallelGbPerS: null, note: 'out of time before the parallel read' };
  const per = Math.floor(blocks / readers);
  t = performance.now();
  const many = await Promise.all(Array.from({ length: readers }, (_, k) => dd(file, 8, k * per, per)));
  const parallelS = (performance.now() - t) / 1000;
  const failed = [one, ...many].find((r) => r.code !== 0);
  if (failed) throw new Error(`dd failed: ${failed.err}`);
  return { bytes, singleGbPerS: bytes / singleS / 1e9, parallelGbPerS: (per * readers * block) / parallelS / 1e9, single: one.err, readers };
}
