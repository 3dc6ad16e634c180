// Each op on random shapes, odd sizes and every weight dtype, against a trusted oracle backend.
import type { StepBatch } from '../contracts.js';
import type { Graph } from '../graph.js';
import type { RotaryAttrs } from '../ops.js';
import type { Rng } from '../sampling/rng.js';
import { range, stepBatch } from './batch.js';
import { expectClose } from './compare.js';
import { caseRng, opGraph, rowsBatch, runSteps, type ConformanceCase, type Harness } from './harness.js';
import { ACTIVATIONS, FLOAT_DTYPES } from './known-answers.js';
import { permutation, randomInt, randomTensor, type TensorSet } from './weights.js';

/** Widths every op is tried at: 1, small odd, primes past a SIMD width, just past a power of two. */
export const ODD_WIDTHS = [1, 3, 17, 67, 130] as const;

export function oracleCases(h: Harness): ConformanceCase[] {
  const oracle = h.oracle;
  if (!oracle) return [];
  const cases: ConformanceCase[] = [];
  const add = (name: string, run: (rng: Rng) => Promise<void>) => cases.push({ name: `oracle: ${name}`, run: () => run(caseRng(h, name)) });

  /** Runs the same steps on the backend and on the oracle (each with a fresh cache) and compares every output. */
  const compare = async (what: string, tensors: TensorSet, graph: Graph, steps: readonly StepBatch[], kvCache = { numBlocks: 1, blockSize: 16 }) => {
    const got = await runSteps(h.backend, graph, tensors, kvCache, steps);
    const want = await runSteps(oracle, graph, tensors, kvCache, steps);
    const width = graph.values[graph.output].width;
    steps.forEach((_, i) => expectClose(got[i], want[i], h.tolerance, `${what}${steps.length > 1 ? `, step ${i + 1}` : ''} (vs ${oracle.name})`, width));
  };
  const input = (rng: Rng, rows: number, width: number, std = 1, mean = 0) => randomTensor(rng, 'f32', [rows, width], std, mean);

  for (const dtype of FLOAT_DTYPES) {
    add(`embedding (${dtype} tables of widths ${ODD_WIDTHS.join(', ')}, offset and scale)`, async (rng) => {
      for (const [i, dim] of ODD_WIDTHS.entries()) {
        const [vocab, offset, scale] = [9, i % 2 ? 2 : 0, i % 2 ? 0.37 : 1];
        const tensors = new Map([['emb', randomTensor(rng, dtype, [vocab, dim])]]);
        const graph = opGraph(tensors, (b) => b.embedding(b.inputs.tokenIds, 'emb', { offset, scale }));
        const ids = range(7).map(() => randomInt(rng, vocab) - offset);
        await compare(`embedding ${dtype} [${vocab}, ${dim}] offset ${offset} scale ${scale}`, tensors, graph, [{ ...rowsBatch(7), tokenIds: Int32Array.from(ids) }]);
      }
    });
    add(`linear (${dtype} weights, in × out over odd sizes, with and without bias)`, async (rng) => {
      const shapes = [[1, 1], [1, 17], [3, 130], [17, 3], [67, 67], [130, 17], [130, 130], [67, 1]];
      for (const [i, [inF, outF]] of shapes.entries()) {
        const rows = i % 2 ? 1 : 6;
        const bias = i % 3 !== 0;
        const tensors = new Map([['x', input(rng, rows, inF)], ['w', randomTensor(rng, dtype, [outF, inF], 1 / Math.sqrt(inF))]]);
        if (bias) tensors.set('b', randomTensor(rng, dtype, [outF]));
        const graph = opGraph(tensors, (b, x) => b.linear(x('x'), 'w', bias ? 'b' : null));
        await compare(`linear ${dtype} ${rows}×${inF} → ${outF}${bias ? ' + bias' : ''}`, tensors, graph, [rowsBatch(rows)]);
      }
    });
    add(`layerNorm and rmsNorm (${dtype} weights, widths ${ODD_WIDTHS.join(', ')}, per-head groups)`, async (rng) => {
      const groups = [...ODD_WIDTHS.map((w) => [w, w]), [9, 3], [51, 17], [130, 65]];
      for (const [width, dim] of groups) {
        const tensors = new Map([
          ['x', input(rng, 5, width, 2, 3)], // a mean far from 0: layerNorm must centre
          ['w', randomTensor(rng, dtype, [dim], 0.5, 1)],
          ['b', randomTensor(rng, dtype, [dim])],
        ]);
        if (dim === width) await compare(`layerNorm ${dtype} width ${width}`, tensors, opGraph(tensors, (b, x) => b.layerNorm(x('x'), 'w', 'b', 1e-5)), [rowsBatch(5)]);
        await compare(`rmsNorm ${dtype} width ${width} dim ${dim}`, tensors, opGraph(tensors, (b, x) => b.rmsNorm(x('x'), 'w', 1e-6, dim)), [rowsBatch(5)]);
      }
    });
  }

  add(`add, activation and gatedActivation (${ACTIVATIONS.join(', ')}) at widths ${ODD_WIDTHS.join(', ')}`, async (rng) => {
    for (const width of ODD_WIDTHS) {
      const tensors = new Map([['a', input(rng, 4, width, 3)], ['b', input(rng, 4, width, 3)]]);
      await compare(`add width ${width}`, tensors, opGraph(tensors, (b, x) => b.add(x('a'), x('b'))), [rowsBatch(4)]);
      for (const fn of ACTIVATIONS) {
        await compare(`activation ${fn} width ${width}`, tensors, opGraph(tensors, (b, x) => b.activation(x('a'), fn)), [rowsBatch(4)]);
        await compare(`gatedActivation ${fn} width ${width}`, tensors, opGraph(tensors, (b, x) => b.gatedActivation(x('a'), x('b'), fn)), [rowsBatch(4)]);
      }
    }
  });

  add('rotary (partial and odd head sizes, both pairings, attentionScaling, positions up to 5000)', async (rng) => {
    const shapes = [[1, 2, 2], [3, 18, 18], [2, 17, 16], [5, 64, 32], [1, 130, 130]];
    for (const [heads, headDim, rotaryDim] of shapes) {
      for (const interleaved of [false, true]) {
        const invFreq = range(rotaryDim / 2).map((i) => 1 / 10000 ** ((2 * i) / rotaryDim));
        const attrs: RotaryAttrs = { heads, headDim, rotaryDim, invFreq, attentionScaling: interleaved ? 0.8 : 1, interleaved };
        const tensors = new Map([['x', input(rng, 5, heads * headDim)]]);
        const positions = Int32Array.from(range(5).map(() => randomInt(rng, 5000)));
        const graph = opGraph(tensors, (b, x) => b.rotary(x('x'), attrs));
        await compare(`rotary heads ${heads} headDim ${headDim} rotaryDim ${rotaryDim} interleaved ${interleaved}`, tensors, graph, [{ ...rowsBatch(5), positions }]);
      }
    }
  });

  add('attention (GQA ratios, odd head sizes, sliding windows, block sizes 1/3/16, permuted blocks, mixed prefill and decode)', async (rng) => {
    const shapes = [[1, 1, 1], [4, 2, 3], [6, 1, 17], [3, 3, 67], [2, 1, 130]];
    const blockSizes = [1, 3, 16];
    for (const [s, [heads, kvHeads, headDim]] of shapes.entries()) {
      for (const [w, window] of [null, 1, 5].entries()) {
        const blockSize = blockSizes[(s + w) % 3];
        const vocab = 11;
        const tensors = new Map([['q', input(rng, vocab, heads * headDim)], ['k', input(rng, vocab, kvHeads * headDim)], ['v', input(rng, vocab, kvHeads * headDim)]]);
        const kv = { layers: 1, kvHeads, headDim };
        const attrs = { layer: 0, heads, kvHeads, headDim, scale: 1 / Math.sqrt(headDim), slidingWindow: window };
        const graph = opGraph(tensors, (b, x) => b.attention(x('q'), x('k'), x('v'), attrs), kv);
        // Sequences A (6 + 4 tokens), B (3 + 1) and C (2, joins in step 2), on shuffled physical blocks.
        const need = [10, 4, 2].map((n) => Math.ceil(n / blockSize));
        const perm = permutation(rng, need[0] + need[1] + need[2]);
        const [ba, bb, bc] = [perm.slice(0, need[0]), perm.slice(need[0], need[0] + need[1]), perm.slice(need[0] + need[1])];
        const t = (n: number) => range(n).map(() => randomInt(rng, vocab));
        const [ta, tb, tc] = [t(10), t(4), t(2)];
        const steps = [
          stepBatch([{ tokens: ta.slice(0, 6), cached: 0, blocks: ba }, { tokens: tb.slice(0, 3), cached: 0, blocks: bb }], blockSize, 'all'),
          stepBatch([{ tokens: tb.slice(3), cached: 3, blocks: bb }, { tokens: ta.slice(6), cached: 6, blocks: ba }, { tokens: tc, cached: 0, blocks: bc }], blockSize, 'all'),
        ];
        await compare(`attention heads ${heads} kvHeads ${kvHeads} headDim ${headDim} window ${window} blockSize ${blockSize}`, tensors, graph, steps, { numBlocks: perm.length, blockSize });
      }
    }
  });

  add('gatherRows (a shuffled subset of 9 rows, width 67)', async (rng) => {
    const tensors = new Map([['x', input(rng, 9, 67)]]);
    const selectedRows = Int32Array.from(permutation(rng, 9).slice(0, 4));
    await compare(`gatherRows [${selectedRows}]`, tensors, opGraph(tensors, (b, x) => b.gatherRows(x('x'))), [{ ...rowsBatch(9), selectedRows }]);
  });
  return cases;
}

