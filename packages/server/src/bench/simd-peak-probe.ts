// The 128-bit WebAssembly SIMD ceiling of this machine, measured: every core runs 12 independent f32x4
// dependency chains (6 of multiplies, 6 of adds; with relaxed SIMD, also 12 of fused multiply-adds) in a
// worker_thread at once, long enough to reach the optimizing tier. No loads, no stores: the rate is
// what the cores' vector pipes give a wasm loop, the bound no wasm GEMM can pass (the cpu backend's
// linears use the same instructions). Best of `runs`; the FMA form only where the engine accepts it
// (Node 20 behind --experimental-wasm-relaxed-simd, which the cpu backend sets too).
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { leb, name, section } from './wasm-bytes.js';

declare const WebAssembly: {
  compile(bytes: Uint8Array): Promise<object>;
  validate(bytes: Uint8Array): boolean;
};

const CHAINS = 12;

/** (func (param $n i32) (param $m f32) (result f32)): $n turns of the chains, the lanes summed at the end. */
export function peakModuleBytes(fma: boolean): Uint8Array {
  const get = (i: number) => [0x20, i];
  const set = (i: number) => [0x21, i];
  const [MUL, ADD, MADD] = [[0xfd, 0xe6, 0x01], [0xfd, 0xe4, 0x01], [0xfd, 0x85, 0x02]];
  const M = 2; // local 2: the multiplier (1.0), splatted; chains are locals 3 .. 3 + CHAINS
  const chain = (i: number) => 3 + i;
  const turn: number[] = [];
  // Plain: half the chains a = a · m (they stay 1, m = 1), half a = a + m (they grow by 1 a turn): the
  // multiply and add pipes each get independent work, as a GEMM's products and sums do. FMA: every
  // chain a = a · m + m, growing by 1 a turn.
  for (let c = 0; c < CHAINS; c++) {
    const step = fma ? [...get(M), ...get(M), ...MADD] : c % 2 ? [...get(M), ...ADD] : [...get(M), ...MUL];
    turn.push(...get(chain(c)), ...step, ...set(chain(c)));
  }

  const body = [
    0x01, CHAINS + 1, 0x7b, // locals 2 .. 2 + CHAINS: v128
    ...get(1), 0xfd, 0x13, ...set(M),
    ...Array.from({ length: CHAINS }, (_, i) => [...get(M), ...set(chain(i))]).flat(),
    0x03, 0x40, ...turn, ...turn, ...get(0), 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, // loop: 2 turns; n -= 1; br_if n
    ...get(chain(0)), ...Array.from({ length: CHAINS - 1 }, (_, i) => [...get(chain(i + 1)), ...ADD]).flat(),
    0xfd, 0x1f, 0x00, // f32x4.extract_lane 0
    0x0b,
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7d, 0x01, 0x7d]),
    ...section(3, [0x01, 0x00]),
    ...section(7, [0x01, ...name('peak'), 0x00, 0x00]),
    ...section(10, [0x01, ...leb(body.length), ...body]),
  ]);
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { peak } = new WebAssembly.Instance(workerData.module).exports;
parentPort.on('message', (n) => {
  if (n === 'exit') process.exit(0);
  const t0 = performance.now();
  const v = peak(n, 1);
  parentPort.postMessage({ s: (performance.now() - t0) / 1e3, v });
});
`;

export interface SimdPeakResult {
  /** All cores together, best run. */
  gflops: number;
  /** One core's share of the best run. */
  perCoreGflops: number;
  fma: boolean;
  threads: number;
  /** How it was measured, for the table and the record. */
  detail: string;
}

/** Flops per loop iteration (2 turns): one per chain and lane (FMA: two), 4 lanes. */
const flopsPerIter = (fma: boolean): number => 2 * CHAINS * 4 * (fma ? 2 : 1);

async function measure(fma: boolean, threads: number, runs: number, n: number): Promise<number> {
  const module = await WebAssembly.compile(peakModuleBytes(fma));
  const workers = Array.from({ length: threads }, () => new Worker(WORKER, { eval: true, workerData: { module } }));
  try {
    await Promise.all(workers.map((w) => new Promise((res, rej) => w.once('online', res).once('error', rej))));
    const once = (n: number) => Promise.all(workers.map((w) => new Promise<{ s: number }>((res) => (w.once('message', res), w.postMessage(n)))));
    await once(Math.ceil(n / 5)); // warm-up: the optimizing tier serves the next calls
    let best = 0;
    for (let r = 0; r < runs; r++) {
      const times = await once(n);
      best = Math.max(best, times.reduce((sum, t) => sum + (n * flopsPerIter(fma)) / t.s / 1e9, 0));
    }
    return best;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** `iterations`: loop turns per timed call (1e7: ~50 ms at full speed). */
export async function simdPeakProbe(threads: number, runs = 7, iterations = 1e7): Promise<SimdPeakResult> {
  const plain = await measure(false, threads, runs, iterations);
  let fused: number | null = null;
  const fmaBytes = peakModuleBytes(true);
  if (!WebAssembly.validate(fmaBytes)) setFlagsFromString('--experimental-wasm-relaxed-simd');
  if (WebAssembly.validate(fmaBytes)) fused = await measure(true, threads, runs, iterations);
  const fma = fused !== null && fused > plain;
  const gflops = fma ? fused! : plain;
  const how = `${CHAINS} independent f32x4 chains per core on ${threads} worker thread(s) at once, best of ${runs}: mul+add ${plain.toFixed(1)} GFLOP/s${fused === null ? ' (relaxed SIMD unavailable)' : `, relaxed FMA ${fused.toFixed(1)} GFLOP/s`}`;
  const perCore = gflops / threads;
  return { gflops, perCoreGflops: perCore, fma, threads, detail: `${how}; ${perCore.toFixed(1)} GFLOP/s per core = 16 flop/cycle (two 128-bit multiply or FMA pipes, 4 lanes, 2 flops) at ${(perCore / 16).toFixed(2)} GHz` };
}
