#!/usr/bin/env node
// Checks expert parallelism on CUDA ranks (one GPU each, NCCL between them), in plain JS against the built
// packages (the bundle of scripts/gpu-bundle.sh; run it where 4 GPUs are visible, through gpu-moe-check.sh):
//   1. NCCL all-to-all through DeviceCollectives.allToAll (grouped ncclSend/ncclRecv) over every visible
//      GPU, one worker thread a GPU: uneven counts with zeros and the rank itself (f32), equal bf16 blocks,
//      the coordinated pattern (only ranks of the same slice), the host allToAll on top of it, and the
//      latency of a decode-sized exchange.
//   2. The MoE fixtures (fixtures/moe) through createEngine with cudaBackend({ activations: 'f32' }) under
//      ep 2 and ep 4 with each placement, dense weights replicated, expert slicing (tensor 2 = tp2 × ep2,
//      tensor 4), and the all-to-all dispatch (plain, coordinated): greedy tokens identical to the
//      single-GPU run and prompt logits within 1e-3 of it.
// Prints one line per case and a PASS/FAIL/SKIP table; writes $OUT/moe-check-h100.json after every case.
// ZINFER_MOE_CHECK_BUDGET_S (default 150) bounds part 2: cases it cannot start in time are SKIPped.
// Exit codes: 0 all passed; 1 a check failed; 2 setup problem; 3 fewer than 2 GPUs (or none).
// ZINFER_MOE_CHECK_DRY=1 runs part 2 on the reference backend with shared-memory worker ranks and skips
// part 1 (checks this script's control flow without a GPU).
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { runFixture, sameAsSingle } from './gpu-fixture-parity.mjs';
import { caseRecorder, importPackages } from './gpu-harness.mjs';
import { bf16Bits, bf16ToF32, expect, hostAllToAll, probeGpus, rankCases, runRanks } from './gpu-nccl-cases.mjs';

process.env.NCCL_NVLS_ENABLE ??= '0'; // never NVLink multicast on these machines (before NCCL loads)

if (isMainThread) await main();
else parentPort.postMessage(await rankChecks(workerData));

// ---------------------------------------------------------------------------------------------------
// Part 1, in each rank's worker thread.

async function rankChecks({ rank, size, grid }) {
  const par = await import('@zinfer/parallel');
  const { results, check } = rankCases();
  const { communicator: comm } = par.joinNcclGrid(grid, rank);
  const dev = comm.device;
  const staging = new par.StagingBuffers();
  // One device exchange: counts from count(src, dst), value(src, dst, k) as the payload; checks the landing.
  const exchange = (count, dtype, value, decode, encode) => {
    const sendCounts = Array.from({ length: size }, (_, d) => count(rank, d));
    const recvCounts = Array.from({ length: size }, (_, s) => count(s, rank));
    const total = (c) => c.reduce((a, b) => a + b, 0);
    const Arr = dtype === 'f32' ? Float32Array : Uint16Array;
    const send = Arr.from(sendCounts.flatMap((c, d) => Array.from({ length: c }, (_, k) => encode(value(rank, d, k)))));
    const recv = new Arr(Math.max(1, total(recvCounts)));
    const bytes = dtype === 'f32' ? 4 : 2;
    const [ds, dr] = [staging.buffer(0, Math.max(4, send.length * bytes)), staging.buffer(1, recv.length * bytes)];
    staging.upload(ds, send);
    dev.allToAll(ds, dr, sendCounts, recvCounts, dtype, staging.stream);
    staging.download(recv, dr);
    const want = recvCounts.flatMap((c, s) => Array.from({ length: c }, (_, k) => value(s, rank, k)));
    const bad = want.findIndex((v, j) => decode(recv[j]) !== v);
    expect(bad < 0, `element ${bad}: ${decode(recv[bad])} != ${want[bad]}`);
    return total(recvCounts);
  };
  const id = (v) => v;
  await check('device allToAll f32: uneven counts, zeros, the rank itself', async () => {
    const n = exchange((s, d) => ((s * 3 + d) % 4) * 1000 + (s === d ? 7 : 0), 'f32', (s, d, k) => s * 1e6 + d * 1e5 + k, id, id);
    return `${n} values received`;
  });
  await check('device allToAll bf16: equal blocks of 4096', async () => {
    exchange(() => 4096, 'bf16', (s, d, k) => (s * size + d) * 2 + (k % 2), bf16ToF32, bf16Bits);
  });
  await check('device allToAll f32: coordinated pattern (same slice of each group of 2 only)', async () => {
    exchange((s, d) => (s % 2 === d % 2 ? 5000 + s : 0), 'f32', (s, d, k) => s * 1e5 + d * 1e4 + k, id, id);
  });
  await check('host allToAll on the device path (own block kept on the host)', () => hostAllToAll(comm, rank, size, (s, d) => ((s + 2 * d) % 3) + 1));
  await check('device allToAll latency: 64 rows × 4096 bf16 a peer (decode-sized dispatch)', async () => {
    const n = 64 * 4096;
    const counts = Array(size).fill(n);
    const [ds, dr] = [staging.buffer(2, n * size * 2), staging.buffer(3, n * size * 2)];
    for (let i = 0; i < 10; i++) dev.allToAll(ds, dr, counts, counts, 'bf16', staging.stream);
    staging.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) dev.allToAll(ds, dr, counts, counts, 'bf16', staging.stream);
    staging.synchronize();
    return `${(((performance.now() - t0) / 100) * 1000).toFixed(1)} µs each (100 back to back)`;
  });
  staging.dispose();
  await comm.close();
  return { rank, results };
}

// ---------------------------------------------------------------------------------------------------
// The leader: part 1's workers, then part 2.

async function main() {
  const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
  const OUT = process.env.OUT || join(tmpdir(), 'zinfer-moe-check');
  mkdirSync(OUT, { recursive: true });
  const dry = process.env.ZINFER_MOE_CHECK_DRY === '1';
  const deadline = Date.now() + 1000 * Number(process.env.ZINFER_MOE_CHECK_BUDGET_S ?? 150);
  const [core, par, moe, cuda, reference] = await importPackages(['@zinfer/core', '@zinfer/parallel', '@zinfer/moe', dry ? null : '@zinfer/kernels/cuda', '@zinfer/kernels/reference']);
  const mods = { core, par, moe, cuda, reference };
  const results = { date: new Date().toISOString(), node: process.version, dry, gpus: 0, nccl: null, cases: [] };
  const { save, record, finish } = caseRecorder(OUT, 'moe-check-h100.json', results);

  let gpus = 4;
  if (!dry) {
    gpus = probeGpus(mods.par, results, save, 'MoE');
    await ncclChecks(mods.par, gpus, record);
  } else {
    record('nccl', 'NCCL all-to-all', 'SKIP', 'dry run: reference backend, shared-memory ranks');
  }
  await fixtureChecks({ ...mods, dry, gpus, ROOT, record, deadline });

  finish();
}

async function ncclChecks(par, gpus, record) {
  const grid = par.createNcclGrid({ ranks: new Array(gpus).fill(null), stages: 1 }, { module: '', exportName: '' });
  await runRanks(par, { script: new URL(import.meta.url), gpus, data: { grid }, grids: [grid], timeoutS: 60, label: 'NCCL all-to-all', record });
}

/** [label, options, GPUs needed]: the modes of issue 7 that 2 and 4 GPUs can hold (4 experts a layer), most telling first. */
function modes(moe) {
  const [contiguous, roundRobin, loadAware] = [moe.contiguousPlacement(), moe.roundRobinPlacement(), moe.loadAwarePlacement({ load: () => new Float64Array([100, 1, 50, 2]) })];
  return [
    ['tp2 × ep2 all-to-all coordinated', { size: 4, tensor: 2, placement: contiguous, dispatch: 'all-to-all', coordinated: true }, 4],
    ['ep 4 all-to-all', { size: 4, placement: roundRobin, dispatch: 'all-to-all' }, 4],
    ['tp2 × ep2 (experts sliced 2 ways)', { size: 4, tensor: 2, placement: roundRobin }, 4],
    ['ep 2 contiguous', { size: 2, placement: contiguous }, 2],
    ['ep 4 round-robin', { size: 4, placement: roundRobin }, 4],
    ['tp2 × ep2 all-to-all', { size: 4, tensor: 2, placement: roundRobin, dispatch: 'all-to-all' }, 4],
    ['experts sliced 4 ways (1 group)', { size: 4, tensor: 4, placement: roundRobin }, 4],
    ['ep 4 load-aware', { size: 4, placement: loadAware }, 4],
    ['ep 2 all-to-all', { size: 2, placement: roundRobin, dispatch: 'all-to-all' }, 2],
    ['ep 4 dense replicated', { size: 4, placement: roundRobin, dense: 'replicated' }, 4],
    ['ep 2 round-robin', { size: 2, placement: roundRobin }, 2],
    ['ep 2 load-aware', { size: 2, placement: loadAware }, 2],
    ['ep 4 contiguous', { size: 4, placement: contiguous }, 4],
  ];
}

async function fixtureChecks({ core, moe, cuda, reference, dry, gpus, ROOT, record, deadline }) {
  const cacheDir = join(tmpdir(), 'zinfer-cuda-cache');
  const backend = () => (dry ? reference.referenceBackend() : cuda.cudaBackend({ activations: 'f32', cacheDir }));
  const base = join(ROOT, 'fixtures', 'moe');
  if (!existsSync(base)) return record('fixtures', 'MoE fixtures', 'SKIP', 'the bundle has no fixtures/moe');
  const only = process.env.ZINFER_MOE_CHECK_MODELS?.split(',');
  const dirs = readdirSync(base).filter((d) => statSync(join(base, d)).isDirectory() && (!only || only.includes(d)));
  // The single-GPU runs first, then each mode over every fixture, so a short budget still covers every mode.
  const fixtures = [];
  for (const name of dirs) {
    const dir = join(base, name);
    const run = (parallel) => runFixture(core, dir, backend(), parallel);
    try {
      fixtures.push({ name, run, single: await run(null) });
    } catch (e) {
      record('fixtures', `moe/${name}: single GPU`, /does not support op/.test(e.message) ? 'SKIP' : 'FAIL', e.message.slice(0, 300));
    }
  }
  for (const [label, opts, need] of modes(moe)) {
    for (const { name, run, single } of fixtures) {
      const caseName = `moe/${name}: ${label} == 1 GPU`;
      if (need > gpus) {
        record('fixtures', caseName, 'SKIP', `needs ${need} GPUs, ${gpus} visible`);
        continue;
      }
      if (Date.now() > deadline) {
        record('fixtures', caseName, 'SKIP', 'out of budget (ZINFER_MOE_CHECK_BUDGET_S)');
        continue;
      }
      const t0 = performance.now();
      try {
        const got = await run(moe.expertParallel({ ...opts, timeoutMs: 60_000 }));
        const msg = sameAsSingle(got, single);
        record('fixtures', caseName, 'PASS', msg, Math.round(performance.now() - t0));
      } catch (e) {
        record('fixtures', caseName, 'FAIL', String(e?.message ?? e).slice(0, 400), Math.round(performance.now() - t0));
      }
    }
  }
}
