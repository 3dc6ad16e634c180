// The batch decode attention (attn_decode in cuda/attention.cu) alone, launched directly on synthetic caches,
// to ask what limits it at batch 64 (PERF-NOTES, session 8): K/V GB/s per cache layout and dtype. The cache
// stores a position's heads side by side ([slot, kvHeads·headDim]): a (row, head) block reads 256-byte pieces
// 8 KiB apart. The same bytes as 64 × 32 one-head sequences ([slot, headDim]) read each cache block's head as
// one contiguous run (what a head-major block layout would give). Then 1–32 rows (split contexts as the
// engine splits them), for where the wide kernel starts to pay. Each kernel is timed as 20 launches in one
// CUDA graph (no host launch cost between them). Writes $OUT/attention-layout.json.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importPackages, median, round } from './gpu-harness.mjs';

const OUT = process.env.OUT || join(tmpdir(), 'zinfer-attention-layout');
const [cuda] = await importPackages(['@zinfer/kernels/cuda']);
const device = cuda.CudaDevice.open(0);
const gpu = new cuda.CudaStream(device, { cacheDir: join(tmpdir(), 'zinfer-cuda-cache') });
const HEAD_DIM = 128;
const CONTEXT = 536;
const CASES = [
  { name: '64 rows × 32 heads, block 16 (the engine layout)', rows: 64, heads: 32, blockSize: 16 },
  { name: '2048 one-head rows, block 16 (head-major blocks)', rows: 2048, heads: 1, blockSize: 16 },
  // Where the limit is: V read from K's addresses (half the DRAM bytes; the GB/s below count both), and every
  // row reading the first row's blocks (4.4 MB of K/V: served from L2, so no DRAM limit at all).
  { name: '64 rows × 32 heads, block 16, V = K', rows: 64, heads: 32, blockSize: 16, vIsK: true },
  { name: '64 rows × 32 heads, block 16, one sequence’s blocks for every row (L2)', rows: 64, heads: 32, blockSize: 16, shared: true },
  // Where the wide kernel starts to pay (attention-launch.ts DECODE_WIDE_FROM_ROWS): fewer rows, split contexts.
  ...[1, 4, 8, 16, 32].map((rows) => ({ name: `${rows} rows × 32 heads, block 16`, rows, heads: 32, blockSize: 16, sweep: true })),
];
const MULTIPROCESSORS = gpu.multiprocessors;
const result = { date: new Date().toISOString(), device: gpu.name, context: CONTEXT, headDim: HEAD_DIM, cases: [] };

// The 8-wide f16 kernel (batch 1 to 15), the wide one (16 rows and up) and the fp8 cache's.
const KERNELS = [
  { kernel: `attn_decode${HEAD_DIM / 8}p_f16`, fp8: false },
  { kernel: `attn_decode${HEAD_DIM / 16}w_f16`, fp8: false },
  { kernel: `attn_decode${HEAD_DIM / 16}p_f16_e4m3`, fp8: true },
];
// ZINFER_ATTENTION_KERNELS / ZINFER_ATTENTION_CASES (comma-separated kernel names / case indices): a subset,
// e.g. one launch each under ncu. A named kernel need not be in the list (another decode entry point with the
// same arguments, e.g. attn_decode8_f16_e4m3); an `_e4m3` name reads an fp8 cache.
const onlyKernels = (process.env.ZINFER_ATTENTION_KERNELS || '').split(',').filter(Boolean);
const onlyCases = (process.env.ZINFER_ATTENTION_CASES || '').split(',').filter(Boolean).map(Number);
const runKernels = onlyKernels.length ? onlyKernels.map((kernel) => ({ kernel, fp8: kernel.endsWith('_e4m3') })) : KERNELS;
for (const { kernel, fp8 } of runKernels) {
  for (const c of CASES.filter((_, i) => !onlyCases.length || onlyCases.includes(i))) {
    const { rows, heads, blockSize } = c;
    const elem = fp8 ? 1 : 2;
    const width = heads * HEAD_DIM;
    const perSeq = Math.ceil(CONTEXT / blockSize);
    const blocks = rows * perSeq;
    const order = Int32Array.from({ length: blocks }, (_, i) => i); // each sequence's blocks in a row
    const rowSeq = Int32Array.from({ length: rows }, (_, i) => i);
    const seqInfo = new Int32Array(rows * 4);
    const slots = new Int32Array(rows);
    for (let i = 0; i < rows; i++) {
      seqInfo.set([i, 1, CONTEXT, c.shared ? 0 : i * perSeq], 4 * i);
      slots[i] = order[i * perSeq + Math.floor((CONTEXT - 1) / blockSize)] * blockSize + ((CONTEXT - 1) % blockSize);
    }
    const ints = [rowSeq, seqInfo, order, slots];
    const meta = ints.map((a, i) => {
      const p = gpu.alloc(a.byteLength, `metadata ${i}`);
      gpu.upload(p, a);
      return p;
    });
    const cacheBytes = blocks * blockSize * width * elem;
    const k = gpu.alloc(cacheBytes, 'K cache');
    const v = gpu.alloc(cacheBytes, 'V cache');
    const one = fp8 ? 0x38383838 : 0x3c003c00; // 1.0 in every element
    gpu.fill32(k, one, cacheBytes / 4);
    gpu.fill32(v, one, cacheBytes / 4);
    const act = gpu.alloc(rows * width * 2 * 4, 'q, k, v, out');
    gpu.fill32(act, 0x3c003c00, (rows * width * 2 * 4) / 4);
    const [q, kNew, vNew, out] = [0, 1, 2, 3].map((i) => act + BigInt(i * rows * width * 2));
    const invFreq = gpu.alloc(64, 'invFreq');
    // Splits of the context as the engine picks them (attention-launch.ts decodeSplits), their scratch.
    const splits = Math.max(1, Math.min(32, Math.ceil((2 * MULTIPROCESSORS) / (rows * heads))));
    const partial = gpu.alloc(rows * heads * splits * (HEAD_DIM + 2) * 4, 'partial');
    const counters = gpu.alloc(rows * heads * 4, 'counters');
    gpu.fill32(counters, 0, rows * heads);
    const launch = () => gpu.launch(kernel, { x: splits, y: heads, z: rows }, 128, [
      out, partial, counters, q, k, c.vIsK ? k : v, meta[0], meta[1], meta[2], HEAD_DIM, heads, blockSize, 0, 1 / Math.sqrt(HEAD_DIM), 32, kNew, vNew, meta[3], invFreq, 0, 0, 1, 0n, 0,
    ]);
    for (let i = 0; i < 3; i++) launch();
    // 20 launches replayed as one graph: back to back on the GPU whatever the host's launch cost.
    gpu.beginCapture();
    for (let i = 0; i < 20; i++) launch();
    const graph = gpu.endCapture();
    gpu.launchGraph(graph);
    gpu.synchronize();
    const samples = [];
    for (let r = 0; r < 7; r++) {
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) gpu.launchGraph(graph);
      gpu.synchronize();
      samples.push((performance.now() - t0) / 100);
    }
    gpu.destroyGraph(graph);
    const ms = median(samples);
    const bytes = 2 * rows * heads * CONTEXT * HEAD_DIM * elem;
    const row = { case: c.name, cache: fp8 ? 'e4m3' : 'f16', kernel, splits, us: round(ms * 1000, 1), GBps: round(bytes / (ms * 1e6), 0) };
    result.cases.push(row);
    console.log(JSON.stringify(row));
    for (const p of [...meta, k, v, act, invFreq, partial, counters]) gpu.free(p);
    gpu.synchronize();
  }
}
gpu.dispose();
writeFileSync(join(OUT, 'attention-layout.json'), `${JSON.stringify(result, null, 2)}\n`);
