// The two builds of the cpu linear kernels: relaxed-SIMD FMA (the default where the engine has relaxed
// SIMD) and plain SIMD (fma: false). Each against the reference on odd shapes, every dtype, row counts
// that take every microkernel (1×8, 2×8, 4×4, 8×4 and their tails); each batch-invariant on its own (a
// row's outputs are the same bits whether it runs alone or among many rows); the two really differ.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, GraphBuilder, Rng, type FloatDType, type HostTensor, type KernelBackend, type StepBatch } from '@zinfer/core';
import { expectClose, memoryWeights, randomTensor, range, stepBatch, weightInfos } from '@zinfer/core/testing';
import { cpuBackend } from '../src/cpu.js';
import { fmaAvailable } from '../src/cpu/wasm-module.js';
import { linear } from '../src/reference.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];
/** Rows: GEMV kernels below 16, then 8×4 groups with 4×4 and short 8-row tails. */
const ROWS = [1, 2, 3, 16, 17, 21, 29, 40];
const SHAPES: [number, number][] = [[257, 67], [130, 131], [19, 300]];
const TOL = 2e-5;
const hasFma = fmaAvailable();

/** Output rows of x[0..rows) · Wᵀ, one step per row count, through one compiled program. */
async function run(backend: KernelBackend, tensors: Map<string, HostTensor>, rowCounts: number[]): Promise<Float32Array[]> {
  const b = new GraphBuilder(weightInfos(tensors), { layers: 0, kvHeads: 1, headDim: 1 });
  const graph = b.build(b.linear(b.embedding(b.inputs.tokenIds, 'x'), 'w', 'b'));
  const p = await backend.compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 4, blockSize: 16 } });
  try {
    const out: Float32Array[] = [];
    for (const rows of rowCounts) {
      const batch: StepBatch = stepBatch([{ tokens: range(rows), cached: 0, blocks: range(Math.ceil(rows / 16)) }], 16, 'all');
      out.push(Float32Array.from(await p.run(batch)));
    }
    return out;
  } finally {
    await p.dispose();
  }
}

function weights(rng: Rng, dtype: FloatDType, K: number, N: number): Map<string, HostTensor> {
  return new Map([['x', randomTensor(rng, 'f32', [40, K])], ['w', randomTensor(rng, dtype, [N, K], 1 / Math.sqrt(K))], ['b', randomTensor(rng, dtype, [N])]]);
}

for (const fma of [false, true]) {
  test(`fma ${fma}: linear against the reference, and each row the same bits alone as among many`, async () => {
    if (fma && !hasFma) return; // covered by the next test: asking for it then fails clearly
    const backend = cpuBackend({ threads: 2, minParallelWork: 0, fma });
    const rng = Rng.fromSeed(fma ? 31 : 32);
    for (const dtype of DTYPES) {
      for (const [K, N] of SHAPES) {
        const t = weights(rng, dtype, K, N);
        const outs = await run(backend, t, ROWS);
        ROWS.forEach((rows, i) => {
          const want = linear((t.get('x')!.data as Float32Array).subarray(0, rows * K), rows, t.get('w')!, t.get('b')!);
          expectClose(outs[i], want, TOL, `fma ${fma} linear ${dtype} ${rows}×${K} → ${N}`, N);
        });
        // Row r of every step is x[r] · Wᵀ: computed by 1×8 (1 row), 2×8, 4×4 or 8×4 kernels alike.
        const alone = outs[0].subarray(0, N);
        ROWS.forEach((rows, i) => assert.equal(Array.from(outs[i].subarray(0, N)), Array.from(alone), `fma ${fma} ${dtype} ${K}→${N}: row 0 of ${rows} rows`));
        assert.equal(Array.from(outs.at(-1)!.subarray(16 * N, 17 * N)), Array.from(outs[4].subarray(16 * N, 17 * N)), `fma ${fma} ${dtype}: row 16 of 40 rows vs of 17`);
      }
    }
  });
}

test('fma: true uses fused multiply-adds (results differ from the plain build), or fails naming the field where unavailable', async () => {
  const t = weights(Rng.fromSeed(33), 'f32', 300, 19);
  if (!hasFma) {
    const err = await run(cpuBackend({ threads: 1, fma: true }), t, [1]).catch((e: unknown) => e);
    assert.ok(err instanceof BackendError && err.info.field === 'fma', `expected a BackendError naming field fma, got ${String(err)}`);
    return;
  }
  const [fused] = await run(cpuBackend({ threads: 1, fma: true }), t, [40]);
  const [plain] = await run(cpuBackend({ threads: 1, fma: false }), t, [40]);
  const [auto] = await run(cpuBackend({ threads: 1 }), t, [40]);
  assert.equal(Array.from(auto), Array.from(fused), 'the default is the FMA build where it is available');
  assert.ok(fused.some((v, i) => v !== plain[i]), 'FMA and plain builds gave identical bits on 40×300 products: the FMA build is not in use');
});

test.run();
