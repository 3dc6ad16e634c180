// The sampling kernel alone (cuda/sample.cu through Program.runSample) against the GPU argmax, on a graph
// that only looks up rows of a logits table (so the step itself costs almost nothing): per row count,
// vocabulary width, sampling settings and blocks a row (ZINFER_SAMPLE_CLUSTER: `auto`, the default, and 1,
// one block a row; ZINFER_SAMPLE_BENCH_MODES=auto,1,2,4,8 to choose), the median ms of a call and the
// sampling kernel's own µs (device events). Writes $OUT/sample-bench.json.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importPackages, median } from './gpu-harness.mjs';
import { opGraphHelpers } from './gpu-op-graphs.mjs';

const OUT = process.env.OUT || join(tmpdir(), 'zinfer-sample-bench');
const [core, testing, cuda] = await importPackages(['@zinfer/core', '@zinfer/core/testing', '@zinfer/kernels/cuda']);
const { opGraph } = opGraphHelpers(core, testing);
const backend = cuda.cudaBackend({ activations: 'f32', cacheDir: join(tmpdir(), 'zinfer-cuda-cache') });
const SETTINGS = {
  greedy: { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 },
  plain: { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 },
  top_k_50: { temperature: 0.8, topK: 50, topP: 1, minP: 0, repetitionPenalty: 1 },
  top_p_095: { temperature: 0.8, topK: 0, topP: 0.95, minP: 0, repetitionPenalty: 1 },
  all: { temperature: 0.8, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.2 },
};
const device = await backend.probe();
const result = { date: new Date().toISOString(), device: device?.description ?? null, ms: {} };
// The SM count decides `auto`'s blocks a row (recorded with each row); the probe's description names it.
const SMS = Number(/(\d+) SMs/.exec(result.device ?? '')?.[1] ?? 132);
let seed = 7;
const uniform = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
const MODES = (process.env.ZINFER_SAMPLE_BENCH_MODES || 'auto,1').split(',');
for (const width of [32000, 128256, 151936]) {
  const rows = 64;
  const rng = core.Rng.fromSeed(width);
  const table = Array.from({ length: rows * width }, () => rng.next() * 12 - 6);
  const tensors = new Map([['logits', testing.tensorOf('f32', [rows, width], table)]]);
  const graph = opGraph(tensors, { layers: 0, kvHeads: 1, headDim: 1 }, (_b, input) => input('logits'));
  const program = await backend.compile(graph, testing.memoryWeights(tensors), { kvCache: { numBlocks: 8, blockSize: 16 } });
  for (const n of [1, 64]) {
    const batch = testing.stepBatch([{ tokens: Array.from({ length: n }, (_, i) => i), cached: 0, blocks: [0, 1, 2, 3, 4] }], 16, 'all');
    const time = async (fn) => {
      const t = [];
      for (let i = 0; i < 30; i++) {
        const t0 = performance.now();
        await fn();
        if (i >= 5) t.push(performance.now() - t0);
      }
      return Math.round(median(t) * 1000) / 1000;
    };
    const row = { run_ms: await time(() => program.run(batch)), argmax_ms: await time(() => program.runArgmax(batch)) };
    const penalized = Int32Array.from({ length: 64 }, (_, i) => (i * 97) % width);
    for (const mode of MODES) {
      cuda.setSampleClusterMode(mode);
      const tag = mode === 'auto' ? '' : `_cluster${mode}`;
      row[`blocks_a_row${tag}`] = cuda.sampleClusterBlocks(width, n, { maxClusterBlocks: 8, multiprocessors: SMS }, mode);
      for (const [name, s] of Object.entries(SETTINGS)) {
        const rows = () => Array.from({ length: n }, () => ({ ...s, uniform: uniform(), penalized: s.repetitionPenalty === 1 ? new Int32Array(0) : penalized }));
        row[`sample_${name}${tag}_ms`] = await time(() => program.runSample(batch, rows()));
        // The kernel alone, from device events (one eager call): what the call costs beyond it is the host's.
        const timings = await cuda.profileStep(program, batch, rows());
        row[`sample_${name}${tag}_kernel_us`] = Math.round(timings.find((k) => k.kernel === 'sample_f32')?.us ?? NaN);
      }
    }
    cuda.setSampleClusterMode('auto');
    result.ms[`w${width}_rows${n}`] = row;
    console.log(`width ${width}, ${n} rows: ${JSON.stringify(row)}`);
  }
  await program.dispose();
}
writeFileSync(join(OUT, 'sample-bench.json'), `${JSON.stringify(result, null, 2)}\n`);
