// Known answers for the ops that depend on positions and the step's layout: rotary, attention (through a
// permuted block table), gatherRows and the row count of a graph's output.
import type { RotaryAttrs } from '../ops.js';
import { stepBatch } from './batch.js';
import { expectClose } from './compare.js';
import { opGraph, rowsBatch, runOp, type ConformanceCase, type Harness } from './harness.js';
import { matrix } from './weights.js';

/** Rotary by the formula of ops.ts, on one row of `heads` heads. */
function rotateRow(x: readonly number[], p: number, a: RotaryAttrs): number[] {
  const out = [...x];
  const half = a.rotaryDim / 2;
  for (let h = 0; h < a.heads; h++) {
    for (let i = 0; i < half; i++) {
      const [c, s] = [Math.cos(p * a.invFreq[i]) * a.attentionScaling, Math.sin(p * a.invFreq[i]) * a.attentionScaling];
      const [i1, i2] = a.interleaved ? [2 * i, 2 * i + 1] : [i, i + half];
      const [x1, x2] = [x[h * a.headDim + i1], x[h * a.headDim + i2]];
      out[h * a.headDim + i1] = x1 * c - x2 * s;
      out[h * a.headDim + i2] = x2 * c + x1 * s;
    }
  }
  return out;
}

interface AttentionCase {
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  window: number | null;
}

/** Causal attention of one sequence whose rows are positions 0..n-1, by the formula of ops.ts. */
function attendAll(q: number[][], k: number[][], v: number[][], c: AttentionCase): number[] {
  const out: number[] = [];
  q.forEach((qRow, p) => {
    for (let h = 0; h < c.heads; h++) {
      const kv = Math.floor(h / (c.heads / c.kvHeads)) * c.headDim;
      const lo = c.window === null ? 0 : Math.max(0, p - c.window + 1);
      const js = Array.from({ length: p - lo + 1 }, (_, i) => lo + i);
      const scores = js.map((j) => c.scale * qRow.slice(h * c.headDim, (h + 1) * c.headDim).reduce((s, qd, d) => s + qd * k[j][kv + d], 0));
      const max = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - max));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let d = 0; d < c.headDim; d++) out.push(js.reduce((s, j, n) => s + (e[n] / sum) * v[j][kv + d], 0));
    }
  });
  return out;
}

export function knownPositionalCases(h: Harness): ConformanceCase[] {
  const { backend, tolerance } = h;
  const cases: ConformanceCase[] = [];
  const add = (name: string, run: () => Promise<void>) => cases.push({ name: `known answer: ${name}`, run });

  // Two heads of headDim 6, rotaryDim 4: the last two dims of each head must pass through.
  const x = [0, 1].map((r) => Array.from({ length: 12 }, (_, j) => ((r + 1) * (j + 1)) / 7 - 0.9));
  const positions = [3, 10];
  for (const interleaved of [false, true]) {
    for (const attentionScaling of [1, 0.5]) {
      add(`rotary (${interleaved ? 'interleaved' : 'rotate-half'}, rotaryDim 4 of headDim 6, attentionScaling ${attentionScaling}) at positions [${positions}]`, async () => {
        const attrs: RotaryAttrs = { heads: 2, headDim: 6, rotaryDim: 4, invFreq: [1, 0.1], attentionScaling, interleaved };
        const tensors = new Map([['x', matrix('f32', x)]]);
        const graph = opGraph(tensors, (b, input) => b.rotary(input('x'), attrs));
        const out = await runOp(backend, tensors, graph, { ...rowsBatch(2), positions: Int32Array.from(positions) });
        expectClose(out, x.flatMap((row, r) => rotateRow(row, positions[r], attrs)), tolerance, `rotary interleaved=${interleaved} scaling=${attentionScaling}`, 12);
      });
    }
  }

  // 4 query heads over 2 kv heads (GQA), 5 tokens in blocks of 2 stored in physical blocks [2, 0, 1].
  const q = [0, 1, 2, 3, 4].map((t) => Array.from({ length: 8 }, (_, j) => Math.sin(t * 8 + j + 1)));
  const k = [0, 1, 2, 3, 4].map((t) => Array.from({ length: 4 }, (_, j) => Math.cos(t * 4 + j + 0.5) * 2));
  const v = [0, 1, 2, 3, 4].map((t) => Array.from({ length: 4 }, (_, j) => t + j / 4));
  for (const window of [null, 2]) {
    add(`attention (4 heads over 2 kv heads, headDim 2, ${window === null ? 'full causal' : `sliding window ${window}`}, permuted block table)`, async () => {
      const c: AttentionCase = { heads: 4, kvHeads: 2, headDim: 2, scale: 0.7, window };
      const tensors = new Map([['q', matrix('f32', q)], ['k', matrix('f32', k)], ['v', matrix('f32', v)]]);
      const graph = opGraph(
        tensors,
        (b, input) => b.attention(input('q'), input('k'), input('v'), { layer: 0, heads: 4, kvHeads: 2, headDim: 2, scale: c.scale, slidingWindow: window }),
        { layers: 1, kvHeads: 2, headDim: 2 },
      );
      const batch = stepBatch([{ tokens: [0, 1, 2, 3, 4], cached: 0, blocks: [2, 0, 1] }], 2, 'all');
      const out = await runOp(backend, tensors, graph, batch, { numBlocks: 3, blockSize: 2 });
      expectClose(out, attendAll(q, k, v, c), tolerance, `attention window=${window}`, 8);
    });
  }

  const table = [0, 1, 2, 3].map((i) => [i, -i, i / 4]);
  add("output rows: a 'selected' output has one row per selected row, in order; a 'tokens' output one per token", async () => {
    const tensors = new Map([['t', matrix('f32', table)]]);
    const batch = { ...rowsBatch(4), selectedRows: Int32Array.of(2, 0, 3) };
    const gathered = await runOp(backend, tensors, opGraph(tensors, (b, input) => b.gatherRows(input('t'))), batch);
    expectClose(gathered, [2, 0, 3].flatMap((r) => table[r]), tolerance, 'gatherRows of rows [2, 0, 3]', 3);
    const all = await runOp(backend, tensors, opGraph(tensors, (b, input) => input('t')), batch);
    expectClose(all, table.flat(), tolerance, "a graph whose output has rows 'tokens' (3 rows selected, 4 token rows)", 3);
  });
  return cases;
}
