#!/usr/bin/env node
// The peer-memory all-reduce (packages/kernels/cuda/peer-allreduce.cu) against NCCL on 2 and 4 GPUs of
// this machine (one worker thread a GPU, as the engine's ranks run), from the built packages (the bundle
// of scripts/gpu-bundle.sh):
//   1. latency: µs per all-reduce, peer one-shot (32 and 8 blocks) and two-shot vs NCCL, f16 8 KB … 1 MB,
//      20 back to back in a graph;
//   2. correctness: f32/f16/bf16, sizes 1 … 2M elements (odd ones too), each inside a captured CUDA graph
//      replayed ZINFER_ALLREDUCE_CHECK_REPLAYS times (default 1000; 100 above 64K elements) with a second, odd-sized all-reduce
//      and a chained one in the same graph (the epochs and double buffers turn over): exact inputs must
//      give exactly NCCL's result, random ones NCCL's within fp rounding, every rank the same bits, and
//      the two-shot kernel the one-shot kernel's bits.
// Each group size gets an equal share of the time left when it starts.
// Prints one line per case and a table; writes $OUT/allreduce-check.json after every case.
// ZINFER_ALLREDUCE_CHECK_BUDGET_S (default 200) bounds the run (cases past it are recorded as SKIP);
// ZINFER_ALLREDUCE_CHECK_GPUS=2,4 picks the group sizes; ZINFER_ALLREDUCE_CHECK_BACKEND=cpu runs the same
// control flow with a simulated device (shared-memory sums, tiny sizes) to test this script without a GPU.
// Exit codes: 0 all passed, 1 a case failed, 2 setup problem, 3 fewer than 2 GPUs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { cudaRank, simRank } from './gpu-allreduce-ranks.mjs';

process.env.NCCL_NVLS_ENABLE ??= '0'; // never NVLink multicast on these machines (before NCCL loads)

const SIM = process.env.ZINFER_ALLREDUCE_CHECK_BACKEND === 'cpu';
const DTYPES = ['f32', 'f16', 'bf16'];
const SIZES = SIM ? [1, 7, 8, 33, 1000, 4097] : [1, 7, 8, 1023, 4096, 5120, 8192, 65_537, 262_144, 524_287, 1_048_576, 2_097_152];
const LATENCY_BYTES = [8192, 16_384, 65_536, 262_144, 1_048_576];
// Buffers for every checked size (2M f32 = 8 MiB), so the check covers the kernel up to there; the
// engine's default threshold is ZINFER_PEER_ALLREDUCE_MAX_BYTES (512 KiB).
// 9 MiB: the largest case (2M f32 elements, 8 MiB) also runs at its odd size (n + 1) in the same graph.
const SETTINGS = {
  enabled: true, maxBytes: 9 * 2 ** 20, halfBytes: 9 * 2 ** 20, blocks: Number(process.env.ZINFER_PEER_ALLREDUCE_BLOCKS || 32), twoShotBytes: Infinity,
  llBytes: Number(process.env.ZINFER_PEER_ALLREDUCE_LL_BYTES ?? 2 ** 16), // the Lamport kernel: messages up to this size
  push: true,
};

if (isMainThread) await main();
else await rankMain(workerData);

// ---------------------------------------------------------------------------------------------------
// One rank (a worker thread): the same cases in the same order as its peers, results to the leader.

async function rankMain({ rank, size, grid, shm, replays }) {
  const post = (m) => parentPort.postMessage({ rank, ...m });
  let dev;
  try {
    dev = SIM ? await simRank(rank, size, shm) : await cudaRank(rank, grid, SETTINGS);
    post({ type: 'ready', reason: dev.reason, peer: dev.peer, paths: dev.paths });
  } catch (e) {
    post({ type: 'ready', error: String(e?.stack ?? e).slice(0, 800) });
    return;
  }
  parentPort.on('message', async (c) => {
    try {
      const times = c.n > 65_537 ? Math.min(replays, 100) : replays;
      post({ type: 'result', id: c.id, ...(c.kind === 'check' ? await checkCase(dev, c, times) : await latencyCase(dev, c)) });
    } catch (e) {
      post({ type: 'result', id: c.id, error: String(e?.message ?? e).slice(0, 500) });
    }
  });
}

/** Inputs: exact (small multiples of 1/8, sums exact in every dtype) or random in [-1, 1). */
function input(rank, n, exact) {
  let s = (rank + 1) * 2654435761 >>> 0 || 1;
  return Float32Array.from({ length: n }, (_, i) => {
    if (exact) return (((i * 7 + rank * 3) % 11) - 5) / 8;
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 31 - 1;
  });
}

/** The residual added to the second all-reduce of a check case (rank-independent). */
const residualInput = (n, exact) => input(101, n, exact);

/**
 * What the kernel computes, bit for bit: every rank's input rounded to dtype, summed in f32 in rank order,
 * rounded once; `times` chains it (the chained all-reduce sums `size` copies of the first result).
 */
function expected(core, dtype, size, n, seed, exact) {
  const round = (a) => core.toF32(dtype, core.fromF32(dtype, a));
  const sum = (parts) => round(Float32Array.from({ length: n }, (_, i) => parts.reduce((acc, p) => Math.fround(acc + p[i]), 0)));
  const first = sum(Array.from({ length: size }, (_, r) => round(input(r + seed, n, exact))));
  return { first, chained: sum(new Array(size).fill(first)) };
}

async function checkCase(dev, { dtype, n, exact, size }, replays) {
  const core = await import('@zinfer/core');
  const odd = 2 * (n >> 1) + 1 === n ? n + 2 : n + 1; // a second size in the same graph
  const run = async (path) => {
    const x = dev.alloc(n, dtype, input(dev.rank, n, exact));
    const y = dev.alloc(odd, dtype, input(dev.rank + 7, odd, exact));
    const resid = dev.alloc(odd, dtype, residualInput(odd, exact)); // the same on every rank, as a residual stream is
    const [out, outY, chained] = [dev.alloc(n, dtype), dev.alloc(odd, dtype), dev.alloc(n, dtype)];
    const graph = await dev.capture(() => {
      dev.allReduce(path, out, x, n, dtype);
      dev.allReduce(path, outY, y, odd, dtype, resid); // the residual add after a row-parallel projection
      dev.allReduce(path, chained, out, n, dtype); // out is written by the first: in-order on the stream
    });
    await dev.replay(graph, replays);
    const res = [await dev.read(out, n, dtype), await dev.read(outY, odd, dtype), await dev.read(chained, n, dtype)];
    dev.release(graph, [x, y, resid, out, outY, chained]);
    return res;
  };
  const peer = dev.peer ? await run('peer') : null;
  const peer2 = dev.peer ? await run('peer2') : null; // two-shot: the same bits as one-shot
  const ll = dev.paths.includes('ll') && Math.ceil((odd * (dtype === 'f32' ? 4 : 2)) / 16) * 16 <= SETTINGS.llBytes ? await run('ll') : null; // Lamport: the same bits
  const nccl = await run('nccl');
  const hash = (arrs) => arrs.map((a) => fnv(a)).join('.');
  const want = expected(core, dtype, size, n, 0, exact);
  const round = (a) => core.toF32(dtype, core.fromF32(dtype, a));
  const residual = round(residualInput(odd, exact));
  const wantOdd = round(expected(core, dtype, size, odd, 7, exact).first.map((v, i) => Math.fround(v + residual[i])));
  const mismatches = (got) => [[got[0], want.first], [got[1], wantOdd], [got[2], want.chained]].reduce((m, [g, w]) => m + g.reduce((k, v, i) => k + (Object.is(v, w[i]) ? 0 : 1), 0), 0);
  let maxDiff = 0;
  let maxRel = 0;
  if (peer) {
    for (let k = 0; k < 3; k++) {
      for (let i = 0; i < peer[k].length; i++) {
        const d = Math.abs(peer[k][i] - nccl[k][i]);
        if (!(d <= maxDiff)) maxDiff = Number.isNaN(d) ? Infinity : d;
        maxRel = Math.max(maxRel, d / Math.max(1, Math.abs(nccl[k][i])));
      }
    }
  }
  return { peerHash: peer ? hash(peer) : null, peer2Hash: peer2 ? hash(peer2) : null, llHash: ll ? hash(ll) : null, ncclHash: hash(nccl), maxDiff, maxRel, peerMismatches: peer ? mismatches(peer) : null };
}

async function latencyCase(dev, { bytes, reps, replays }) {
  const n = bytes / 2;
  const x = dev.alloc(n, 'f16', input(dev.rank, n, true));
  const out = dev.alloc(n, 'f16');
  const time = async (path) => {
    const graph = await dev.capture(() => {
      for (let i = 0; i < reps; i++) dev.allReduce(path, out, x, n, 'f16');
    });
    await dev.replay(graph, 3); // warm-up
    const t0 = performance.now();
    await dev.replay(graph, replays);
    const us = ((performance.now() - t0) * 1000) / (reps * replays);
    dev.release(graph, []);
    return us;
  };
  const res = { peerUs: null, peer2Us: null, peer8Us: null, llUs: null };
  for (const path of dev.paths) if (path !== 'll' || bytes <= SETTINGS.llBytes) res[`${path}Us`] = await time(path);
  dev.release(null, [x, out]);
  return res;
}

/** FNV-1a over the f32 values' bits: equal hashes, equal results. */
function fnv(a) {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  let h = 0x811c9dc5;
  for (const w of u) h = Math.imul(h ^ w, 0x01000193) >>> 0;
  return h.toString(16);
}

// ---------------------------------------------------------------------------------------------------
// The leader: one group of workers per size, the cases in lockstep, the JSON and the table.

async function main() {
  const OUT = process.env.OUT || join(tmpdir(), 'zinfer-allreduce-check');
  mkdirSync(OUT, { recursive: true });
  const deadline = performance.now() + 1000 * Number(process.env.ZINFER_ALLREDUCE_CHECK_BUDGET_S || 200);
  const results = { date: new Date().toISOString(), node: process.version, backend: SIM ? 'cpu (simulated device)' : 'cuda', settings: SETTINGS, groups: [], cases: [], latency: [] };
  const save = () => writeFileSync(join(OUT, 'allreduce-check.json'), JSON.stringify(results, null, 2));
  let par = null;
  if (!SIM) {
    try {
      par = await import('@zinfer/parallel');
      results.gpus = par.cudaDeviceCount();
      results.nccl = par.Nccl.load().versionString;
    } catch (e) {
      console.log(`SETUP: ${e.message}`);
      save();
      process.exit(2);
    }
    if (results.gpus < 2) {
      console.log(`only ${results.gpus} GPU(s): the check needs 2 or more`);
      save();
      process.exit(3);
    }
  }
  const sizes = (process.env.ZINFER_ALLREDUCE_CHECK_GPUS || '2,4').split(',').map(Number).filter((g) => SIM || g <= results.gpus);
  for (const [i, g] of sizes.entries()) {
    if (performance.now() > deadline) break;
    const share = performance.now() + (deadline - performance.now()) / (sizes.length - i);
    await runGroup(g, { par, results, save, deadline: share });
  }
  printTable(results);
  save();
  const failed = results.cases.filter((c) => c.status === 'FAIL').length + results.groups.filter((g) => g.error).length;
  process.exit(failed ? 1 : 0);
}

async function runGroup(size, { par, results, save, deadline }) {
  const replays = SIM ? 5 : Number(process.env.ZINFER_ALLREDUCE_CHECK_REPLAYS || 1000);
  const group = { size, reason: null, error: null };
  results.groups.push(group);
  let grid = null;
  let shm = null;
  if (SIM) shm = (await import('@zinfer/parallel')).createShmGroup(size, { timeoutMs: 20_000 });
  else grid = par.createNcclGrid({ ranks: new Array(size).fill(null), stages: 1 }, { module: '', exportName: '' });
  const workers = Array.from({ length: size }, (_, rank) => new Worker(new URL(import.meta.url), { workerData: { rank, size, grid, shm, replays } }));
  const waiting = new Map();
  let readyCount = 0;
  let ready;
  const readyP = new Promise((r) => (ready = r));
  const answers = [];
  for (const w of workers) {
    w.on('message', (m) => {
      if (m.type === 'ready') {
        answers[m.rank] = m;
        if (++readyCount === size) ready();
      } else waiting.get(m.id)?.(m);
    });
    w.on('error', (e) => {
      group.error ??= `worker error: ${e.message}`;
      ready();
      for (const f of waiting.values()) f({ error: e.message });
    });
  }
  const timeout = (ms) => new Promise((r) => setTimeout(() => r('timeout'), Math.max(0, ms)));
  try {
    if ((await Promise.race([readyP, timeout(deadline - performance.now())])) === 'timeout') throw new Error('ranks did not start within the budget');
    const broken = answers.find((a) => a?.error);
    if (broken) throw new Error(`rank ${broken.rank}: ${broken.error}`);
    group.reason = answers[0].reason;
    group.peer = answers.every((a) => a.peer);
    console.log(`== ${size} ranks: ${group.peer ? 'peer all-reduce on' : 'NCCL only'} (${group.reason})`);
    save();
    let id = 0;
    const ask = async (c) => {
      const mine = ++id;
      const got = new Map();
      const all = new Promise((resolve) => waiting.set(mine, (m) => (got.set(m.rank ?? got.size, m), got.size === size || m.error ? resolve([...got.values()]) : null)));
      for (const w of workers) w.postMessage({ ...c, id: mine });
      const r = await Promise.race([all, timeout(Math.min(90_000, Math.max(20_000, deadline - performance.now())))]);
      waiting.delete(mine);
      if (r === 'timeout') throw new Error(`case ${JSON.stringify(c)} did not finish (a hang: the remaining cases are skipped)`);
      return r;
    };
    // Correctness first: the latency table only uses what the budget has left.
    for (const n of SIZES) {
      for (const dtype of DTYPES) {
        for (const exact of [true, false]) {
          const name = `${size} ranks ${dtype} n=${n} ${exact ? 'exact' : 'random'}`;
          if (performance.now() > deadline - 5000) {
            record(results, save, { group: size, name, status: 'SKIP', detail: 'budget' });
            continue;
          }
          const t0 = performance.now();
          const rs = await ask({ kind: 'check', dtype, n, exact, size });
          record(results, save, { group: size, dtype, n, exact, ms: Math.round(performance.now() - t0), ...judge(rs, dtype, size, exact, group.peer), name });
        }
      }
    }
    for (const bytes of LATENCY_BYTES) {
      if (performance.now() > deadline - 5000) break;
      const rs = await ask({ kind: 'latency', bytes, reps: 20, replays: SIM ? 2 : 50 });
      const err = rs.find((r) => r.error);
      const row = { ranks: size, bytes, peerUs: err ? null : round(rs[0].peerUs), peer2Us: err ? null : round(rs[0].peer2Us), peer8Us: err ? null : round(rs[0].peer8Us), llUs: err ? null : round(rs[0].llUs), ncclUs: err ? null : round(rs[0].ncclUs), error: err?.error ?? null };
      results.latency.push(row);
      console.log(`latency ${size} ranks ${bytes} B: peer ${row.peerUs ?? '-'} µs (two-shot ${row.peer2Us ?? '-'}, 8 blocks ${row.peer8Us ?? '-'}, Lamport ${row.llUs ?? '-'}), NCCL ${row.ncclUs ?? '-'} µs${row.error ? ` (${row.error})` : ''}`);
      save();
    }
  } catch (e) {
    group.error = e.message;
    console.log(`FAIL group of ${size}: ${e.message}`);
    save();
  } finally {
    if (grid && group.error) par.abortNcclGrid(grid);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/**
 * PASS when every rank got the same bits, equal to the kernel's arithmetic done on the host (f32 sums in
 * rank order), and NCCL's result is within rounding of it (NCCL rounds in the dtype at every step).
 */
function judge(rs, dtype, size, exact, peer) {
  const err = rs.find((r) => r.error);
  if (err) return { status: 'FAIL', detail: `rank ${err.rank}: ${err.error}` };
  if (!peer) return { status: 'SKIP', detail: 'no peer all-reduce in this group' };
  const same = rs.every((r) => r.peerHash === rs[0].peerHash);
  const sameNccl = rs.every((r) => r.ncclHash === rs[0].ncclHash);
  const maxRel = Math.max(...rs.map((r) => r.maxRel));
  const ulp = { f32: 2 ** -23, f16: 2 ** -10, bf16: 2 ** -7 }[dtype];
  const tol = exact ? 0 : 2 * size * size * ulp; // chained sums of `size` terms, NCCL rounding each partial
  const wrong = Math.max(...rs.map((r) => r.peerMismatches));
  const twoShot = rs.every((r) => r.peer2Hash === r.peerHash);
  const ll = rs.every((r) => r.llHash === null || r.llHash === r.peerHash);
  const llRan = rs.every((r) => r.llHash !== null);
  const ok = same && twoShot && ll && wrong === 0 && maxRel <= tol;
  const detail = `${same ? 'bit-identical across ranks' : 'RANKS DIFFER'}; two-shot ${twoShot ? 'identical' : 'DIFFERS'}; Lamport ${!ll ? 'DIFFERS' : llRan ? 'identical' : 'not run (over its slots)'}; ${wrong} elements differ from the host's f32 rank-order sums; max |peer − NCCL| ${rs[0].maxDiff.toExponential(2)} (rel ${maxRel.toExponential(2)}, tol ${tol.toExponential(2)})${sameNccl ? '' : '; NCCL ranks differ'}`;
  return { status: ok ? 'PASS' : 'FAIL', detail, maxRel };
}

function record(results, save, c) {
  results.cases.push(c);
  console.log(`${c.status} ${c.name}${c.ms ? ` (${c.ms} ms)` : ''}  ${c.detail ?? ''}`);
  save();
}

function round(x) {
  return x === null || x === undefined ? null : Math.round(x * 100) / 100;
}

function printTable(results) {
  const count = (s) => results.cases.filter((c) => c.status === s).length;
  console.log('\n== latency (µs per all-reduce, f16, 20 back to back in a CUDA graph)');
  console.log(`ranks  bytes     one-shot  two-shot  8 blocks   Lamport     NCCL   NCCL / best peer (one-shot: ${SETTINGS.blocks} blocks)`);
  const cell = (v, w) => String(v ?? '-').padStart(w);
  for (const r of results.latency) {
    const best = Math.min(...[r.peerUs, r.peer2Us, r.peer8Us, r.llUs].filter((v) => v !== null && v !== undefined));
    console.log(`${String(r.ranks).padEnd(6)} ${String(r.bytes).padEnd(8)} ${cell(r.peerUs, 9)} ${cell(r.peer2Us, 9)} ${cell(r.peer8Us, 9)} ${cell(r.llUs, 9)} ${cell(r.ncclUs, 8)}   ${Number.isFinite(best) ? (r.ncclUs / best).toFixed(2) + '×' : '-'}`);
  }
  console.log(`\n== correctness: ${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped; groups: ${results.groups.map((g) => `${g.size}: ${g.error ? 'ERROR ' + g.error : g.reason}`).join('; ')}`);
}
