#!/usr/bin/env node
// Checks tensor and pipeline parallelism on CUDA ranks (one GPU each, NCCL between them), in plain JS
// against the built packages (the bundle of scripts/gpu-bundle.sh; run it where several GPUs are visible):
//   1. NCCL through @zinfer/parallel's communicator over every visible GPU, one worker thread a GPU:
//      all-reduce (sum, max; f32 through the host path, bf16 through the device path), all-gather,
//      uneven all-to-all, send/recv along a pipeline of every GPU, and the latency of 8 KB all-reduces.
//   2. Every fixture model through createEngine with cudaBackend({ activations: 'f32' }) under tp 2,
//      tp 4 (4+ GPUs), pp 2 and pp 2 × tp 2 (4+ GPUs): greedy tokens identical to the single-GPU run and
//      prompt logits within 1e-3 of it. MoE fixtures run where the cuda backend has their ops (else SKIP).
//   3. The row-parallel GEMV's push into the Lamport all-reduce (gemv.cu EPI_PUSH) against the all-reduce
//      reading x itself (ZINFER_PEER_PUSH=off), in f16 and bf16 under tp 2 and tp 4: a 5-token prompt (its
//      step runs the GEMVs too) gives bit-identical prompt logits and the same 8 greedy tokens.
// Prints one line per case and a PASS/FAIL/SKIP table; writes $OUT/parallel-check-h100.json (after every
// case). Exit codes: 0 all passed; 1 a check failed; 2 setup problem; 3 fewer than 2 GPUs (or none).
// ZINFER_PARALLEL_CHECK_MODELS=llama2,gpt2 limits part 2 to those fixtures. ZINFER_PARALLEL_CHECK_DRY=1
// runs part 2 on the reference backend with shared-memory ranks and skips part 1 (tests this script here).
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { runFixture, sameAsSingle } from './gpu-fixture-parity.mjs';
import { caseRecorder, importPackages } from './gpu-harness.mjs';
import { bf16Bits, expect, hostAllToAll, probeGpus, rankCases, runRanks } from './gpu-nccl-cases.mjs';

process.env.NCCL_NVLS_ENABLE ??= '0'; // never NVLink multicast on these machines (before NCCL loads)

if (isMainThread) await main();
else parentPort.postMessage(await rankChecks(workerData));

// ---------------------------------------------------------------------------------------------------
// Part 1, in each rank's worker thread.

async function rankChecks({ rank, size, tpGrid, ppGrid }) {
  const par = await import('@zinfer/parallel');
  const { results, check } = rankCases();
  const { communicator: tp } = par.joinNcclGrid(tpGrid, rank);
  const { pipeline: pp } = par.joinNcclGrid(ppGrid, rank);
  await check('allReduce sum f32 (1,000,003 values, host path)', async () => {
    const buf = Float32Array.from({ length: 1_000_003 }, (_, i) => (rank + 1) * ((i % 7) + 1));
    await tp.allReduce(buf);
    const total = (size * (size + 1)) / 2;
    const bad = buf.findIndex((v, i) => v !== total * ((i % 7) + 1));
    expect(bad < 0, `element ${bad}: ${buf[bad]} != ${total * ((bad % 7) + 1)}`);
  });
  await check('allReduce max f32', async () => {
    const buf = Float32Array.from({ length: 4099 }, (_, i) => ((i + rank) % size) - 0.5);
    await tp.allReduce(buf, 'max');
    expect(buf.every((v) => v === size - 1.5), 'max differs');
  });
  await check('allGather f32 (1001 values a rank, rank order)', async () => {
    const send = Float32Array.from({ length: 1001 }, (_, i) => rank * 1000 + i);
    const recv = new Float32Array(1001 * size);
    await tp.allGather(send, recv);
    const bad = recv.findIndex((v, j) => v !== Math.floor(j / 1001) * 1000 + (j % 1001));
    expect(bad < 0, `element ${bad}: ${recv[bad]}`);
  });
  await check('allToAll f32, uneven counts', () => hostAllToAll(tp, rank, size, (src, dst) => ((src + dst) % 3) + 1));
  await check('send/recv along a pipeline of every GPU', async () => {
    const buf = new Float32Array(65_537);
    if (rank === 0) buf.forEach((_, i) => (buf[i] = i));
    else await pp.recv(buf, rank - 1);
    if (rank > 0) buf.forEach((v, i) => (buf[i] = v + 1));
    if (rank < size - 1) await pp.send(buf, rank + 1);
    else expect(buf.every((v, i) => v === i + size - 1), 'values changed on the way');
  });
  await check('allReduce sum bf16 on the device path (program-style enqueue)', async () => {
    const n = 12_345;
    const staging = new par.StagingBuffers();
    try {
      const bits = new Uint16Array(n).fill(bf16Bits(rank + 1));
      const d = staging.buffer(0, n * 2);
      staging.upload(d, bits);
      tp.device.allReduce(d, d, n, 'bf16', staging.stream);
      staging.download(bits, d);
      const want = bf16Bits((size * (size + 1)) / 2);
      expect(bits.every((b) => b === want), 'bf16 sum differs');
      // Latency: 8 KB (4096 f16) all-reduces enqueued back to back, as a decode step does.
      const x = staging.buffer(1, 8192);
      for (let i = 0; i < 20; i++) tp.device.allReduce(x, x, 4096, 'f16', staging.stream);
      staging.synchronize();
      const t0 = performance.now();
      for (let i = 0; i < 200; i++) tp.device.allReduce(x, x, 4096, 'f16', staging.stream);
      staging.synchronize();
      return `8 KB all-reduce ${(((performance.now() - t0) / 200) * 1000).toFixed(1)} µs each (200 back to back)`;
    } finally {
      staging.dispose();
    }
  });
  await tp.close();
  await pp.close();
  return { rank, results };
}

// ---------------------------------------------------------------------------------------------------
// The leader: part 1's workers, then part 2.

async function main() {
  const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
  const OUT = process.env.OUT || join(tmpdir(), 'zinfer-parallel-check');
  mkdirSync(OUT, { recursive: true });
  const dry = process.env.ZINFER_PARALLEL_CHECK_DRY === '1';
  const [core, par, cuda, reference] = await importPackages(['@zinfer/core', '@zinfer/parallel', '@zinfer/kernels/cuda', '@zinfer/kernels/reference']);
  const results = { date: new Date().toISOString(), node: process.version, gpus: 0, nccl: null, cases: [] };
  const { save, record, finish } = caseRecorder(OUT, 'parallel-check-h100.json', results);

  let gpus = 4;
  if (!dry) {
    gpus = probeGpus(par, results, save, 'parallel');
    await ncclChecks(par, gpus, record);
  } else {
    record('nccl', 'NCCL collectives', 'SKIP', 'dry run: reference backend, shared-memory ranks');
  }
  await fixtureChecks({ core, par, cuda, reference, dry, gpus, ROOT, record });
  await pushChecks({ core, par, cuda, dry, gpus, ROOT, record });
  await kvOffloadChecks({ core, par, cuda, reference, dry, gpus, ROOT, record });

  finish();
}

async function ncclChecks(par, gpus, record) {
  const plan = (stages) => ({ ranks: new Array(gpus).fill(null), stages });
  const factory = { module: '', exportName: '' };
  const tpGrid = par.createNcclGrid(plan(1), factory);
  const ppGrid = par.createNcclGrid(plan(gpus), factory);
  await runRanks(par, { script: new URL(import.meta.url), gpus, data: { tpGrid, ppGrid }, grids: [tpGrid, ppGrid], timeoutS: 90, label: 'NCCL collectives', record });
}

async function fixtureChecks({ core, par, cuda, reference, dry, gpus, ROOT, record }) {
  const backend = () => checkBackend({ cuda, reference, dry });
  const configs = [
    ['tp 2', () => par.tensorParallel({ size: 2 }), 2],
    ['tp 4', () => par.tensorParallel({ size: 4 }), 4],
    ['pp 2', () => par.pipelineParallel({ stages: 2 }), 2],
    ['pp 2 × tp 2', () => par.pipelineParallel({ stages: 2, tensorSize: 2 }), 4],
  ];
  const only = process.env.ZINFER_PARALLEL_CHECK_MODELS?.split(',');
  const dirs = ['models', 'moe'].flatMap((set) => {
    const base = join(ROOT, 'fixtures', set);
    if (!existsSync(base)) return []; // the GPU bundle may carry fixtures/models only
    return readdirSync(base).filter((d) => statSync(join(base, d)).isDirectory() && (!only || only.includes(d))).map((d) => [`${set === 'moe' ? 'moe/' : ''}${d}`, join(base, d)]);
  });
  for (const [name, dir] of dirs) {
    const run = (parallel) => runFixture(core, dir, backend(), parallel);
    let base;
    try {
      base = await run(null);
    } catch (e) {
      const unsupported = /does not support op/.test(e.message);
      record('fixtures', `${name}: single GPU`, unsupported ? 'SKIP' : 'FAIL', e.message.slice(0, 300));
      continue;
    }
    await configCases({ core, record, gpus, group: 'fixtures', model: name, configs }, async (strategy) => sameAsSingle(await run(strategy), base));
  }
}

/** Part 3: push on against push off, bit for bit, on the llama2 and mixtral fixtures in the 16-bit modes. */
async function pushChecks({ core, par, cuda, dry, gpus, ROOT, record }) {
  if (dry) return record('push', 'GEMV push == all-reduce of x', 'SKIP', 'dry run: the reference backend has no peer all-reduce');
  const configs = [
    ['tp 2', () => par.tensorParallel({ size: 2 }), 2],
    ['tp 4', () => par.tensorParallel({ size: 4 }), 4],
  ];
  for (const [model, dir] of [['llama2', join(ROOT, 'fixtures/models/llama2')], ['moe/mixtral', join(ROOT, 'fixtures/moe/mixtral')]]) {
    if (!existsSync(dir)) continue;
    const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids.slice(0, 5);
    for (const activations of ['f16', 'bf16']) {
      const run = async (parallel, push) => {
        const saved = process.env.ZINFER_PEER_PUSH;
        process.env.ZINFER_PEER_PUSH = push ? 'on' : 'off'; // read by each rank's worker at its set-up
        try {
          return await runFixture(core, dir, cuda.cudaBackend({ activations, cacheDir: join(tmpdir(), 'zinfer-cuda-cache') }), parallel, ids);
        } finally {
          if (saved === undefined) delete process.env.ZINFER_PEER_PUSH;
          else process.env.ZINFER_PEER_PUSH = saved;
        }
      };
      await configCases({ core, record, gpus, group: 'push', model: `${model} ${activations}`, configs, what: 'push == no push' }, async (strategy) => {
        const [on, off] = [await run(strategy, true), await run(strategy, false)];
        let differ = 0;
        on.promptLogits.forEach((row, p) => row.forEach((v, i) => (differ += Object.is(v, off.promptLogits[p][i]) ? 0 : 1)));
        const same = on.tokens.length === off.tokens.length && on.tokens.every((t, i) => t === off.tokens[i]);
        if (differ || !same) throw new Error(`push on vs off: ${differ} prompt logits differ; greedy ${JSON.stringify(on.tokens)} vs ${JSON.stringify(off.tokens)}`);
        return `${on.promptLogits.length} × ${on.promptLogits[0].length} prompt logits bit-identical, ${on.tokens.length} greedy tokens identical`;
      });
    }
  }
}

/**
 * Each [label, strategy, GPUs needed] of `configs` as one case of `group`: `check(strategy)` returns the
 * PASS message or throws. Too few GPUs skip; so does a ConfigError unless `refusalSkips` is false (a
 * fixture's heads may not divide by the ranks).
 */
async function configCases({ core, record, gpus, group, model, configs, refusalSkips = true, what = '== 1 GPU' }, check) {
  for (const [label, strategy, need] of configs) {
    const caseName = `${model}: ${label} ${what}`;
    if (need > gpus) {
      record(group, caseName, 'SKIP', `needs ${need} GPUs, ${gpus} visible`);
      continue;
    }
    const t0 = performance.now();
    try {
      record(group, caseName, 'PASS', await check(strategy()), Math.round(performance.now() - t0));
    } catch (e) {
      record(group, caseName, refusalSkips && e instanceof core.ConfigError ? 'SKIP' : 'FAIL', e.message.slice(0, 400), Math.round(performance.now() - t0));
    }
  }
}

/** The backend the checks run on: cuda in f32 (the NVRTC cache carried in /tmp), or reference for a dry run. */
function checkBackend({ cuda, reference, dry }) {
  return dry ? reference.referenceBackend() : cuda.cudaBackend({ activations: 'f32', cacheDir: join(tmpdir(), 'zinfer-cuda-cache') });
}

// KV-cache offload for pipeline stages (pipelineParallel's kvOffload): four requests at once whose KV needs
// more blocks than each stage's device cache holds, so blocks move between the GPU and pinned host memory
// while the stages run; their greedy tokens must be those of the plain single-GPU engine.
async function kvOffloadChecks({ core, par, cuda, reference, dry, gpus, ROOT, record }) {
  const backend = () => checkBackend({ cuda, reference, dry });
  const dir = join(ROOT, 'fixtures', 'models', 'llama3');
  const ids = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).input_ids;
  const prompts = [0, 3, 7, 11].map((k) => ids.slice(k)); // 4 blocks of 16 each with the output
  const generate = async (parallel) => {
    const engine = await core.createEngine({ model: dir, backend: backend(), limits: { blockSize: 16 }, ...(parallel ? { parallel } : {}) });
    try {
      return (await Promise.all(prompts.map((inputIds) => engine.generate({ inputIds, maxTokens: 40, temperature: 0, ignoreEos: true }).result))).map((r) => r.tokens);
    } finally {
      await engine.close();
    }
  };
  const single = await generate(null);
  const configs = [
    ['pp 2, KV offload to host (10 device blocks for 16)', () => par.pipelineParallel({ stages: 2, kvOffload: { deviceBlocks: 10 } }), 2],
    ['pp 2 × tp 2, KV offload to host (10 device blocks)', () => par.pipelineParallel({ stages: 2, tensorSize: 2, kvOffload: { deviceBlocks: 10 } }), 4],
  ];
  await configCases({ core, record, gpus, group: 'kv offload', model: 'llama3', configs, refusalSkips: false }, async (strategy) => {
    const got = await generate(strategy);
    const bad = got.findIndex((t, i) => JSON.stringify(t) !== JSON.stringify(single[i]));
    if (bad >= 0) throw new Error(`request ${bad}: ${JSON.stringify(got[bad])} != ${JSON.stringify(single[bad])}`);
    return '4 requests × 40 greedy tokens identical';
  });
}
