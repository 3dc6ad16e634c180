// Each cpu kernel against the reference ops on random shapes with odd sizes, every weight dtype; the
// fused linear epilogues against the unfused reference graph; results independent of the thread count.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GraphBuilder, Rng, type ActivationFn, type FloatDType, type Graph, type HostTensor, type KernelBackend, type RotaryAttrs, type StepBatch, type ValueId } from '@zinfer/core';
import { expectClose, memoryWeights, randomTensor, range, stepBatch, tinyLlama, weightInfos } from '@zinfer/core/testing';
import { cpuBackend } from '../src/cpu.js';
import { activation, add, embedding, layerNorm, linear, referenceBackend, rmsNorm, rotary } from '../src/reference.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

const SIZES = [1, 3, 17, 67, 130, 257];
const ROWS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 33];
const DTYPES: FloatDType[] = ['f32', 'f16', 'bf16'];
const ACTS: ActivationFn[] = ['relu', 'silu', 'gelu', 'gelu_tanh'];
/** f32 sums (the reference sums in doubles): a few ulps of the largest output per term. */
const TOL = 2e-5;

const cpu = cpuBackend({ threads: 2 });
/** Every kernel split over 3 threads however small it is (slower to compile: it starts workers each time). */
const split = cpuBackend({ threads: 3, minParallelWork: 0 });
/** Half the shapes of a test on each: both paths covered without starting workers for every shape. */
const either = (i: number) => (i % 2 ? split : cpu);
const reference = referenceBackend();

const rowsBatch = (rows: number): StepBatch => stepBatch([{ tokens: range(rows), cached: 0, blocks: range(Math.ceil(rows / 16)) }], 16, 'all');

/** A graph whose inputs are rows of f32 tables (token id r → row r), as the conformance suite builds them. */
function opGraph(tensors: Map<string, HostTensor>, build: (b: GraphBuilder, input: (table: string) => ValueId) => ValueId, kv = { layers: 0, kvHeads: 1, headDim: 1 }): Graph {
  const b = new GraphBuilder(weightInfos(tensors), kv);
  return b.build(build(b, (t) => b.embedding(b.inputs.tokenIds, t)));
}

async function runAll(backend: KernelBackend, graph: Graph, tensors: Map<string, HostTensor>, steps: StepBatch[], kvCache = { numBlocks: 8, blockSize: 16 }): Promise<Float32Array[]> {
  const p = await backend.compile(graph, memoryWeights(tensors), { kvCache });
  try {
    const out: Float32Array[] = [];
    for (const s of steps) out.push(await p.run(s));
    return out;
  } finally {
    await p.dispose();
  }
}

const f32Rows = (t: HostTensor, rows: number) => (t.data as Float32Array).subarray(0, rows * t.shape[1]);

test('linear: every dtype, in × out over 1, 3, 17, 67, 130, 257, rows 1–9 and 33, with and without bias', async () => {
  const rng = Rng.fromSeed(11);
  for (const dtype of DTYPES) {
    for (const inF of SIZES) {
      for (const [j, outF] of SIZES.entries()) {
        const bias = j % 2 === 1;
        const tensors = new Map([['x', randomTensor(rng, 'f32', [33, inF])], ['w', randomTensor(rng, dtype, [outF, inF], 1 / Math.sqrt(inF))]]);
        if (bias) tensors.set('b', randomTensor(rng, dtype, [outF]));
        const graph = opGraph(tensors, (b, x) => b.linear(x('x'), 'w', bias ? 'b' : null));
        const got = await runAll(cpu, graph, tensors, ROWS.map(rowsBatch));
        ROWS.forEach((rows, i) => {
          const want = linear(f32Rows(tensors.get('x')!, rows), rows, tensors.get('w')!, bias ? tensors.get('b')! : null);
          expectClose(got[i], want, TOL, `linear ${dtype} ${rows}×${inF} → ${outF}${bias ? ' + bias' : ''}`, outF);
        });
      }
    }
  }
});

test('linear epilogues and groups (bias + activation, + residual, gate/up, q/k/v) match the unfused reference graph', async () => {
  const rng = Rng.fromSeed(12);
  for (const dtype of DTYPES) {
    for (const [si, [inF, outF]] of [[67, 130], [257, 17], [3, 257]].entries()) {
      const tensors = new Map([
        ['x', randomTensor(rng, 'f32', [33, inF])], ['r', randomTensor(rng, 'f32', [33, outF])],
        ['g', randomTensor(rng, dtype, [outF, inF], 1 / Math.sqrt(inF))], ['u', randomTensor(rng, dtype, [outF, inF], 1 / Math.sqrt(inF))],
        ['v', randomTensor(rng, dtype, [outF, inF], 1 / Math.sqrt(inF))], ['bg', randomTensor(rng, dtype, [outF])], ['bu', randomTensor(rng, dtype, [outF])],
      ]);
      const graphs: [string, Graph][] = [];
      for (const fn of ACTS) {
        graphs.push([`linear + bias → ${fn}`, opGraph(tensors, (b, x) => b.activation(b.linear(x('x'), 'g', 'bg'), fn))]);
        graphs.push([`gate/up → gated ${fn}`, opGraph(tensors, (b, x) => { const h = x('x'); return b.gatedActivation(b.linear(h, 'g', 'bg'), b.linear(h, 'u'), fn); })]);
      }
      graphs.push(['residual + linear', opGraph(tensors, (b, x) => b.add(x('r'), b.linear(x('x'), 'g')))]);
      graphs.push(['linear → gelu → + residual', opGraph(tensors, (b, x) => b.add(b.activation(b.linear(x('x'), 'u', 'bu'), 'gelu'), x('r')))]);
      graphs.push(['q/k/v group summed', opGraph(tensors, (b, x) => { const h = x('x'); return b.add(b.add(b.linear(h, 'g'), b.linear(h, 'u', 'bu')), b.linear(h, 'v')); })]);
      for (const [what, graph] of graphs) {
        const steps = ROWS.map(rowsBatch);
        const [got, want] = [await runAll(cpu, graph, tensors, steps), await runAll(reference, graph, tensors, steps)];
        ROWS.forEach((rows, i) => expectClose(got[i], want[i], TOL, `${what} ${dtype} ${rows}×${inF} → ${outF}`, outF));
        if (si > 0 || dtype !== 'bf16') continue;
        const gotSplit = await runAll(split, graph, tensors, steps);
        ROWS.forEach((rows, i) => assert.equal(gotSplit[i], got[i], `${what} ${dtype} ${rows} rows: 3 threads vs 2`));
      }
    }
  }
});

test('many rows and few outputs: rows split over the threads too, identical to one thread', async () => {
  // 4 threads, 13 or 16 outputs (2 panels): the 64-, 100- and 200-row steps run as 2 row groups × 2
  // output ranges (rowGroups in asm/linear.ts); 9 rows stay one group.
  const rng = Rng.fromSeed(17);
  const four = cpuBackend({ threads: 4, minParallelWork: 0 });
  const one = cpuBackend({ threads: 1 });
  const rows = [9, 64, 100, 200];
  for (const dtype of DTYPES) {
    for (const [inF, outF] of [[67, 16], [40, 13]]) {
      const tensors = new Map([
        ['x', randomTensor(rng, 'f32', [200, inF])], ['r', randomTensor(rng, 'f32', [200, outF])],
        ['g', randomTensor(rng, dtype, [outF, inF], 1 / Math.sqrt(inF))], ['u', randomTensor(rng, dtype, [outF, inF], 1 / Math.sqrt(inF))],
      ]);
      const graphs: [string, Graph][] = [
        ['residual + linear', opGraph(tensors, (b, x) => b.add(x('r'), b.linear(x('x'), 'g')))],
        ['gate/up → gated silu', opGraph(tensors, (b, x) => { const h = x('x'); return b.gatedActivation(b.linear(h, 'g'), b.linear(h, 'u'), 'silu'); })],
      ];
      for (const [what, graph] of graphs) {
        const steps = rows.map(rowsBatch);
        const [got, single, want] = [await runAll(four, graph, tensors, steps, { numBlocks: 16, blockSize: 16 }), await runAll(one, graph, tensors, steps, { numBlocks: 16, blockSize: 16 }), await runAll(reference, graph, tensors, steps, { numBlocks: 16, blockSize: 16 })];
        rows.forEach((r, i) => {
          assert.equal(got[i], single[i], `${what} ${dtype} ${r}×${inF} → ${outF}: 4 threads vs 1`);
          expectClose(got[i], want[i], TOL, `${what} ${dtype} ${r}×${inF} → ${outF}`, outF);
        });
      }
    }
  }
});

test('embedding: every dtype, widths 1–257, offset and scale', async () => {
  const rng = Rng.fromSeed(13);
  for (const dtype of DTYPES) {
    for (const [di, dim] of SIZES.entries()) {
      const table = randomTensor(rng, dtype, [40, dim]);
      const tensors = new Map([['t', table]]);
      const graph = opGraph(tensors, (b) => b.embedding(b.inputs.tokenIds, 't', { offset: 3, scale: 0.37 }));
      const steps = ROWS.map((rows) => ({ ...rowsBatch(rows), tokenIds: Int32Array.from(range(rows), (i) => (i * 7) % 37 - 3) }));
      const got = await runAll(either(di), graph, tensors, steps);
      steps.forEach((s, i) => expectClose(got[i], embedding(s.tokenIds, table, 't', 3, 0.37), 1e-6, `embedding ${dtype} dim ${dim} rows ${s.tokenIds.length}`, dim));
    }
  }
});

test('rmsNorm and layerNorm: every dtype, widths 1–257, per-head groups, rows 1–9 and 33', async () => {
  const rng = Rng.fromSeed(14);
  for (const dtype of DTYPES) {
    for (const [gi, [width, dim]] of [...SIZES.map((w) => [w, w]), [9, 3], [130, 65], [257 * 3, 257]].entries()) {
      const tensors = new Map([['x', randomTensor(rng, 'f32', [33, width], 2, 3)], ['w', randomTensor(rng, dtype, [dim], 0.5, 1)], ['b', randomTensor(rng, dtype, [dim])]]);
      const x = tensors.get('x')!;
      const rms = await runAll(either(gi), opGraph(tensors, (b, i) => b.rmsNorm(i('x'), 'w', 1e-6, dim)), tensors, ROWS.map(rowsBatch));
      ROWS.forEach((rows, i) => expectClose(rms[i], rmsNorm(f32Rows(x, rows), dim, tensors.get('w')!, 1e-6), 1e-6, `rmsNorm ${dtype} width ${width} dim ${dim} rows ${rows}`, width));
      if (dim !== width) continue;
      const ln = await runAll(either(gi + 1), opGraph(tensors, (b, i) => b.layerNorm(i('x'), 'w', 'b', 1e-5)), tensors, ROWS.map(rowsBatch));
      ROWS.forEach((rows, i) => expectClose(ln[i], layerNorm(f32Rows(x, rows), dim, tensors.get('w')!, tensors.get('b')!, 1e-5), 1e-6, `layerNorm ${dtype} width ${width} rows ${rows}`, width));
    }
  }
});

test('add, activation and gatedActivation at widths 1–257, rows 1–9 and 33', async () => {
  const rng = Rng.fromSeed(15);
  for (const [wi, width] of SIZES.entries()) {
    const b3 = either(wi);
    const tensors = new Map([['a', randomTensor(rng, 'f32', [33, width], 3)], ['b', randomTensor(rng, 'f32', [33, width], 3)]]);
    const [a, b] = [tensors.get('a')!, tensors.get('b')!];
    const sums = await runAll(b3, opGraph(tensors, (g, i) => g.add(i('a'), i('b'))), tensors, ROWS.map(rowsBatch));
    ROWS.forEach((rows, i) => expectClose(sums[i], add(f32Rows(a, rows), f32Rows(b, rows)), 0, `add width ${width} rows ${rows}`, width));
    for (const fn of ACTS) {
      const plain = await runAll(b3, opGraph(tensors, (g, i) => g.activation(i('a'), fn)), tensors, ROWS.map(rowsBatch));
      const gated = await runAll(b3, opGraph(tensors, (g, i) => g.gatedActivation(i('a'), i('b'), fn)), tensors, ROWS.map(rowsBatch));
      ROWS.forEach((rows, i) => {
        expectClose(plain[i], activation(fn, f32Rows(a, rows)), 1e-6, `activation ${fn} width ${width} rows ${rows}`, width);
        expectClose(gated[i], activation(fn, f32Rows(a, rows), f32Rows(b, rows)), 1e-6, `gatedActivation ${fn} width ${width} rows ${rows}`, width);
      });
    }
  }
});

test('activations far out: exp clamps, nothing overflows to NaN', async () => {
  const xs = [-1000, -100, -88, -30, -6, -1e-3, 0, 1e-3, 6, 30, 88, 100, 1000];
  const tensors = new Map([['a', { dtype: 'f32' as const, shape: [1, xs.length], data: Float32Array.from(xs) }]]);
  for (const fn of ACTS) {
    const [got] = await runAll(cpu, opGraph(tensors, (g, i) => g.activation(i('a'), fn)), tensors, [rowsBatch(1)]);
    const want = activation(fn, Float32Array.from(xs));
    xs.forEach((x, j) => assert.ok(Math.abs(got[j] - want[j]) <= 1e-6 * Math.max(1, Math.abs(want[j])), `${fn}(${x}) = ${got[j]}, expected ${want[j]}`));
  }
});

test('rotary: both pairings, odd and partial head sizes, positions up to 100000', async () => {
  const rng = Rng.fromSeed(16);
  for (const [hi, [heads, headDim, rotaryDim]] of [[1, 2, 2], [3, 17, 16], [2, 130, 130], [5, 64, 32], [4, 128, 128], [1, 258, 256]].entries()) {
    for (const interleaved of [false, true]) {
      const invFreq = range(rotaryDim / 2).map((i) => 1 / 500000 ** ((2 * i) / rotaryDim));
      const attrs: RotaryAttrs = { heads, headDim, rotaryDim, invFreq, attentionScaling: interleaved ? 0.8 : 1, interleaved };
      const tensors = new Map([['x', randomTensor(rng, 'f32', [33, heads * headDim])]]);
      const steps = ROWS.map((rows) => ({ ...rowsBatch(rows), positions: Int32Array.from(range(rows), () => Math.floor(rng.next() * 100000)) }));
      const got = await runAll(either(hi), opGraph(tensors, (b, x) => b.rotary(x('x'), attrs)), tensors, steps);
      steps.forEach((s, i) => {
        const rows = s.positions.length;
        expectClose(got[i], rotary(f32Rows(tensors.get('x')!, rows), s.positions, attrs), 1e-6, `rotary heads ${heads} headDim ${headDim}/${rotaryDim} interleaved ${interleaved} rows ${rows}`, heads * headDim);
      });
    }
  }
});

test('attention over a long context: 300-token prefill in chunks, then decode steps of 1–9 sequences', async () => {
  const rng = Rng.fromSeed(17);
  for (const [heads, kvHeads, headDim, window] of [[8, 2, 64, null], [6, 3, 17, 50], [4, 4, 130, null]] as const) {
    const vocab = 64;
    const tensors = new Map([['q', randomTensor(rng, 'f32', [vocab, heads * headDim])], ['k', randomTensor(rng, 'f32', [vocab, kvHeads * headDim])], ['v', randomTensor(rng, 'f32', [vocab, kvHeads * headDim])]]);
    const attrs = { layer: 0, heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim), slidingWindow: window };
    const graph = opGraph(tensors, (b, x) => b.attention(x('q'), x('k'), x('v'), attrs), { layers: 1, kvHeads, headDim });
    const blockSize = 16;
    const tokens = (n: number) => range(n).map(() => Math.floor(rng.next() * vocab));
    // Sequence s owns blocks s, s + 10, s + 20, ...: interleaved physical blocks.
    const blocks = (s: number) => range(25).map((i) => s + 10 * i);
    const steps: StepBatch[] = [];
    const cached = range(9).map(() => 0);
    for (let c = 0; c < 3; c++) steps.push(stepBatch(range(9).map((s) => ({ tokens: tokens(100), cached: cached[s] + 100 * c, blocks: blocks(s) })), blockSize, 'all'));
    cached.fill(300);
    for (const n of range(9, 1)) {
      steps.push(stepBatch(range(n).map((s) => ({ tokens: tokens(1), cached: cached[s]++, blocks: blocks(s) })), blockSize, 'all'));
    }
    const kv = { numBlocks: 250, blockSize };
    const [got, want] = [await runAll(cpu, graph, tensors, steps, kv), await runAll(reference, graph, tensors, steps, kv)];
    steps.forEach((s, i) => expectClose(got[i], want[i], 1e-5, `attention heads ${heads}/${kvHeads} headDim ${headDim} window ${window} step ${i}`, heads * headDim));
  }
});

test('results are identical with 1, 2 and 3 threads (tiny Llama in every dtype, prefill and decode)', async () => {
  for (const dtype of DTYPES) {
    const { graph, tensors } = tinyLlama(Rng.fromSeed(18), { vocabSize: 61, hiddenSize: 67, numHeads: 4, numKeyValueHeads: 2, headDim: 18, intermediateSize: 130, numLayers: 2, slidingWindow: null }, dtype);
    const steps = [stepBatch([{ tokens: range(33, 1), cached: 0, blocks: [0, 1, 2] }], 16, 'all'), stepBatch([{ tokens: [5], cached: 33, blocks: [0, 1, 2] }], 16, 'all')];
    const outs = [];
    for (const b of [cpuBackend({ threads: 1 }), cpuBackend({ threads: 2, minParallelWork: 0 }), cpuBackend({ threads: 3, minParallelWork: 0 })]) outs.push(await runAll(b, graph, tensors, steps, { numBlocks: 3, blockSize: 16 }));
    for (const i of [0, 1]) {
      assert.equal(outs[1][i], outs[0][i], `${dtype} step ${i}: 2 threads vs 1`);
      assert.equal(outs[2][i], outs[0][i], `${dtype} step ${i}: 3 threads vs 1`);
    }
  }
});

test.run();
