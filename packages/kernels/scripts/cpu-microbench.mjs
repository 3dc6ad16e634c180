#!/usr/bin/env node
// A local timing script for the cpu backend's linear kernels (not a test, not the `zinfer bench`
// command): GEMV (1 row, and 8 rows as in batch-8 decode) over bf16 weights of Llama-1B MLP shapes
// (pairs of [5632, 2048] and [2048, 5632], ≥ 512 MiB in all, so nothing stays in cache) and GEMM at 512
// rows, each through the public backend API (compile a graph of chained linears, time Program.run).
// Prints GB/s of weights streamed and GFLOP/s, best and median of the runs, for 1 and 2 threads (or
// THREADS=1,2,4). On a machine shared with other processes the medians drop first; read the best.
// Needs the built package: npm run build -w @zinfer/kernels (or nx run-many -t build).
// Usage: node scripts/cpu-microbench.mjs [--pairs 12] [--rows 512] [--reps 10] [--dtype bf16]
import { GraphBuilder } from '@zinfer/core';
import { cpuBackend } from '@zinfer/kernels/cpu';
import { cpus } from 'node:os';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const PAIRS = Number(arg('pairs', 12));
const GEMM_ROWS = Number(arg('rows', 512));
const REPS = Number(arg('reps', 10));
const DTYPE = arg('dtype', 'bf16');
const THREADS = (process.env.THREADS ?? '1,2').split(',').map(Number);
const HIDDEN = 2048;
const INTER = 5632;

/** Random weights in [-1/32, 1/32) as bf16/f16 words or f32, filled fast (xorshift, no Math.random). */
function randomWeights(n) {
  let s = 0x9e3779b9 ^ n;
  const next = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), s >>> 0);
  if (DTYPE === 'f32') return Float32Array.from({ length: n }, () => (next() / 2 ** 32 - 0.5) / 16);
  const out = new Uint16Array(n);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) {
    f[0] = (next() / 2 ** 32 - 0.5) / 16;
    out[i] = DTYPE === 'bf16' ? u[0] >>> 16 : toF16(f[0]);
  }
  return out;
}

function toF16(x) {
  const f = new Float32Array([x]);
  const b = new Uint32Array(f.buffer)[0];
  const sign = (b >>> 16) & 0x8000;
  const e = ((b >>> 23) & 0xff) - 112;
  if (e <= 0) return sign;
  return sign | (e << 10) | ((b >>> 13) & 0x3ff);
}

/** x [rows, HIDDEN] → (up [INTER, HIDDEN] → down [HIDDEN, INTER]) × pairs. */
function chain(pairs, tableRows) {
  const tensors = new Map([['x', { dtype: 'f32', shape: [tableRows, HIDDEN], data: Float32Array.from({ length: tableRows * HIDDEN }, (_, i) => Math.sin(i)) }]]);
  for (let p = 0; p < pairs; p++) {
    tensors.set(`up${p}`, { dtype: DTYPE, shape: [INTER, HIDDEN], data: randomWeights(INTER * HIDDEN) });
    tensors.set(`down${p}`, { dtype: DTYPE, shape: [HIDDEN, INTER], data: randomWeights(INTER * HIDDEN) });
  }
  const b = new GraphBuilder(new Map([...tensors].map(([name, t]) => [name, { name, shape: t.shape }])), { layers: 0, kvHeads: 1, headDim: 1 });
  let x = b.embedding(b.inputs.tokenIds, 'x');
  for (let p = 0; p < pairs; p++) x = b.linear(b.linear(x, `up${p}`), `down${p}`);
  const weightBytes = pairs * 2 * INTER * HIDDEN * (DTYPE === 'f32' ? 4 : 2);
  return { graph: b.build(x), source: { names: () => [...tensors.keys()], get: (n) => tensors.get(n) }, weightBytes };
}

function batchOf(rows) {
  const ids = Int32Array.from({ length: rows }, (_, i) => i);
  return { tokenIds: ids, positions: ids, slots: ids, selectedRows: ids, sequences: [{ queryStart: 0, queryLength: rows, contextLength: rows, blockTable: Int32Array.from({ length: Math.ceil(rows / 16) }, (_, i) => i) }] };
}

async function time(program, batch, reps) {
  for (let i = 0; i < 2; i++) await program.run(batch);
  const ts = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await program.run(batch);
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  return { best: ts[0], median: ts[Math.floor(ts.length / 2)] };
}

const kv = { kvCache: { numBlocks: Math.ceil(GEMM_ROWS / 16), blockSize: 16 } };
console.log(`cpu backend linear microbench: ${cpus()[0]?.model.trim()}, ${cpus().length} cores; ${DTYPE} weights`);
const gemv = chain(PAIRS, 8);
const gemm = chain(1, GEMM_ROWS);
const rows = [];
for (const threads of THREADS) {
  const backend = cpuBackend({ threads });
  const pv = await backend.compile(gemv.graph, gemv.source, kv);
  const v = await time(pv, batchOf(1), REPS);
  const v8 = await time(pv, batchOf(8), Math.max(3, Math.floor(REPS / 2)));
  await pv.dispose();
  const pm = await backend.compile(gemm.graph, gemm.source, kv);
  const m = await time(pm, batchOf(GEMM_ROWS), Math.max(3, Math.floor(REPS / 3)));
  await pm.dispose();
  const flops = 2 * GEMM_ROWS * 2 * INTER * HIDDEN;
  rows.push({
    threads,
    'GEMV GB/s (best)': (gemv.weightBytes / v.best / 1e9).toFixed(1),
    'GEMV GB/s (median)': (gemv.weightBytes / v.median / 1e9).toFixed(1),
    '8 rows GB/s (best)': (gemv.weightBytes / v8.best / 1e9).toFixed(1),
    [`GEMM ${GEMM_ROWS} rows GFLOP/s (best)`]: (flops / m.best / 1e9).toFixed(1),
    [`GEMM GFLOP/s (median)`]: (flops / m.median / 1e9).toFixed(1),
  });
}
console.log(`GEMV: 1 and 8 rows over ${PAIRS * 2} matrices, ${(gemv.weightBytes / 2 ** 20).toFixed(0)} MiB of ${DTYPE} weights; GEMM: ${GEMM_ROWS} rows × [${INTER}, ${HIDDEN}] and [${HIDDEN}, ${INTER}]`);
console.table(rows);
