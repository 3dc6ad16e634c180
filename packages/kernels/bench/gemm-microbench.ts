// GEMM microbench of the cpu backend (a local timing script, not a test): GFLOP/s of the linear layers at
// prefill shapes, through the public backend API (compile a graph of linears, time Program.run), for
// the 1.1B Llama (M = 512 rows: q, k+v, o, gate+up, down) and the embedded default model (M = 256: the
// same layers at its size, plus the tied LM head). Medians of --reps runs, variants back to back.
// Usage (from packages/kernels): node --import tsx bench/gemm-microbench.ts [--model 1b|default|all]
//   [--reps 7] [--threads 1,2] [--dtype bf16] [--fma auto|on|off]. ZINFER_CPU_WASM=path times another build of the kernels.
import { GraphBuilder, type HostTensor } from '@zinfer/core';
import { cpus } from 'node:os';
import { cpuBackend } from '../src/cpu.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const REPS = Number(arg('reps', '7'));
const DTYPE = arg('dtype', 'bf16') as 'f32' | 'f16' | 'bf16';
const THREADS = arg('threads', '1,2').split(',').map(Number);
/** on / off: the relaxed-SIMD FMA kernels or the plain ones; auto: the backend's default. */
const FMA = arg('fma', 'auto');

interface Shape { name: string; rows: number; hidden: number; layers: [string, number, number][] }
const SHAPES: Record<string, Shape> = {
  '1b': { name: 'llama-1b', rows: 512, hidden: 2048, layers: [['qkv', 2560, 2048], ['o', 2048, 2048], ['gate+up', 11264, 2048], ['down', 2048, 5632]] },
  default: { name: 'zinfer-default', rows: 256, hidden: 288, layers: [['qkv', 480, 288], ['o', 288, 288], ['gate+up', 1536, 288], ['down', 288, 768], ['lm-head', 4096, 288]] },
};

function randomWeights(n: number, seed: number): HostTensor['data'] {
  let s = (0x9e3779b9 ^ seed) | 1;
  const next = () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32 - 0.5);
  if (DTYPE === 'f32') return Float32Array.from({ length: n }, () => next() / 16);
  const f = new Float32Array(n).map(() => next() / 16);
  const u = new Uint32Array(f.buffer);
  return Uint16Array.from(u, (b) => (DTYPE === 'bf16' ? b >>> 16 : toF16(b)));
}

function toF16(b: number): number {
  const e = ((b >>> 23) & 0xff) - 112;
  return e <= 0 ? (b >>> 16) & 0x8000 : ((b >>> 16) & 0x8000) | (e << 10) | ((b >>> 13) & 0x3ff);
}

/** One linear [N, K] applied to x [rows, K]: a graph of its own. */
function linearGraph(rows: number, N: number, K: number) {
  const x: HostTensor = { dtype: 'f32', shape: [rows, K], data: Float32Array.from({ length: rows * K }, (_, i) => Math.sin(i)) };
  const tensors = new Map<string, HostTensor>([['x', x], ['w', { dtype: DTYPE, shape: [N, K], data: randomWeights(N * K, N + K) }]]);
  const b = new GraphBuilder(new Map([...tensors].map(([name, t]) => [name, { name, shape: t.shape }])), { layers: 0, kvHeads: 1, headDim: 1 });
  const graph = b.build(b.linear(b.embedding(b.inputs.tokenIds, 'x'), 'w'));
  return { graph, source: { names: () => [...tensors.keys()], get: (n: string) => tensors.get(n)! } };
}

function batchOf(rows: number) {
  const ids = Int32Array.from({ length: rows }, (_, i) => i);
  return { tokenIds: ids, positions: ids, slots: ids, selectedRows: ids, sequences: [{ queryStart: 0, queryLength: rows, contextLength: rows, blockTable: Int32Array.from({ length: Math.ceil(rows / 16) }, (_, i) => i) }] };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function main(): Promise<void> {
  const which = arg('model', 'all');
  const shapes = which === 'all' ? Object.values(SHAPES) : [SHAPES[which]];
  console.log(`cpu GEMM microbench: ${cpus()[0]?.model.trim()}, ${cpus().length} cores; ${DTYPE} weights; wasm ${process.env.ZINFER_CPU_WASM ?? 'dist'}, fma ${FMA}`);
  for (const threads of THREADS) {
    const backend = cpuBackend({ threads, ...(FMA === 'auto' ? {} : { fma: FMA === 'on' }) });
    for (const s of shapes) {
      let flops = 0;
      let seconds = 0;
      let cpuSeconds = 0;
      const cells: string[] = [];
      for (const [name, N, K] of s.layers) {
        const { graph, source } = linearGraph(s.rows, N, K);
        const p = await backend.compile(graph, source, { kvCache: { numBlocks: Math.ceil(s.rows / 16), blockSize: 16 } });
        const batch = batchOf(s.rows);
        for (let i = 0; i < 2; i++) await p.run(batch);
        const ts: number[] = [];
        const cs: number[] = [];
        for (let i = 0; i < REPS; i++) {
          const t0 = performance.now();
          const c0 = process.cpuUsage();
          await p.run(batch);
          const c = process.cpuUsage(c0);
          ts.push((performance.now() - t0) / 1e3);
          cs.push((c.user + c.system) / 1e6);
        }
        await p.dispose();
        const f = 2 * s.rows * N * K;
        flops += f;
        seconds += median(ts);
        cpuSeconds += median(cs);
        cells.push(`${name} ${(f / median(ts) / 1e9).toFixed(1)}`);
      }
      // Per CPU-second (all threads): on a machine shared with other processes, the less disturbed figure.
      const perCpu = (flops / cpuSeconds / 1e9) * threads;
      console.log(`${s.name} M=${s.rows}, ${threads} thread(s): ${(flops / seconds / 1e9).toFixed(1)} GFLOP/s wall (median of ${REPS}), ${perCpu.toFixed(1)} per ${threads} CPU-s; ${cells.join(', ')}`);
    }
  }
}

void main();
