// Program.runSample, where a backend has it: each row's id must be what TokenFilter.pick picks from run()'s
// logits of the same step with the row's params and uniform — top-k with ties at the k-th, nucleus cuts
// through tied scores (kept in ascending id order), min-p, weights that underflow, the repetition penalty
// on both signs, greedy rows, NaN/±Infinity rows, draws at 0 and near 1 — at one-block and multi-block
// widths and GPT-2's 50,257. A device kernel sums masses in another order than the host, so a draw that
// sits within f64 rounding of a boundary could differ; random data does not put one there.
import type { SampleRow } from '../contracts.js';
import { HostRowSampler } from '../sampling/sample-rows.js';
import type { FilterParams } from '../sampling/token-filter.js';
import { stepBatch } from './batch.js';
import { caseRng, opGraph, withProgram, type ConformanceCase, type Harness } from './harness.js';
import { tensorOf } from './weights.js';

const WIDTHS = [7, 3001, 50257];

/** Rows of logits; small multiples of 1/4 where ties matter, so every activation dtype holds them exactly. */
function sampleRowsOf(width: number, rand: () => number): number[][] {
  const fill = (f: (i: number) => number) => Array.from({ length: width }, (_, i) => f(i));
  const peaks = (row: number[]) => {
    for (const [i, v] of [[1, 10], [width - 1, 9.5], [Math.floor(width / 2), 9.5], [2, 9], [3, 9]] as const) if (i < width) row[i] = v;
    return row;
  };
  return [
    fill(() => rand() * 16 - 8), // continuous: ties only by rounding
    fill(() => Math.floor(rand() * 25) / 4 - 3), // 25 levels: ties at every cut
    peaks(fill(() => -5 + Math.floor(rand() * 4) / 4)), // a few peaks over a tied floor
    fill(() => 1), // flat: every cut runs through one tie
    fill((i) => (i % 3 === 0 ? Number.NaN : i % 3 === 1 ? -Infinity : rand() * 4)), // masked and NaN
    fill((i) => (i === width - 1 || i === Math.floor(width / 3) ? Infinity : 0)), // +Infinity: the lowest one
    fill(() => -Infinity), // nothing finite: 0
  ];
}

function paramSets(width: number): (FilterParams & { penalize?: boolean })[] {
  return [
    { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 },
    { temperature: 0.7, topK: 50, topP: 1, minP: 0, repetitionPenalty: 1 },
    { temperature: 1.3, topK: 0, topP: 0.9, minP: 0, repetitionPenalty: 1 },
    { temperature: 1, topK: 40, topP: 0.8, minP: 0.05, repetitionPenalty: 1 },
    { temperature: 0.5, topK: 0, topP: 1e-6, minP: 0, repetitionPenalty: 1 },
    { temperature: 1, topK: 1, topP: 1, minP: 0, repetitionPenalty: 1 },
    { temperature: 2, topK: 0, topP: 1, minP: 0.2, repetitionPenalty: 1 },
    { temperature: 1, topK: 20, topP: 0.95, minP: 0, repetitionPenalty: 1.3, penalize: true },
    { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1.5, penalize: true },
    { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1 },
    { temperature: 1, topK: width + 5, topP: 0.5, minP: 0, repetitionPenalty: 1 },
    { temperature: 1e-3, topK: 0, topP: 0.5, minP: 0, repetitionPenalty: 1 }, // most weights underflow to 0
    { temperature: 100, topK: 0, topP: 0.3, minP: 0, repetitionPenalty: 1 }, // nearly flat: a long nucleus
  ];
}

export function sampleCases(h: Harness): ConformanceCase[] {
  return WIDTHS.map((width) => ({
    name: `runSample: TokenFilter's pick from run()'s logits for each row's params and draw, width ${width}`,
    run: async () => {
      const rng = caseRng(h, `sample ${width}`);
      const rand = () => rng.next();
      const rows = sampleRowsOf(width, rand);
      const sets = paramSets(width);
      const tensors = new Map([['logits', tensorOf('f32', [rows.length, width], rows.flat())]]);
      const graph = opGraph(tensors, (_b, input) => input('logits')); // row r of the output = table row r
      const host = new HostRowSampler();
      await withProgram(h.backend, graph, tensors, { numBlocks: 1, blockSize: 16 }, async (p) => {
        if (!p.runSample) return; // optional in the contract
        for (let call = 0; call < sets.length; call++) {
          // Every row meets every parameter set over the calls; rows in another order each call.
          const tokens = rows.map((_, r) => (r + 2 * call) % rows.length);
          const batch = stepBatch([{ tokens, cached: 0, blocks: [0] }], 16, 'all');
          const sample: SampleRow[] = tokens.map((_, r) => {
            const { penalize, ...params } = sets[(r + call) % sets.length];
            const uniform = [0, 1 - 2 ** -40, rand(), rand()][(r + call) % 4];
            const penalized = penalize ? distinctIds(width, rand) : new Int32Array(0);
            return { ...params, uniform, penalized };
          });
          const logits = await p.run(batch);
          const ids = await p.runSample(batch, sample);
          const want = host.pick(logits, sample, width);
          if (ids.length !== want.length) throw new Error(`runSample returned ${ids.length} ids for ${want.length} rows`);
          for (let r = 0; r < want.length; r++) {
            if (ids[r] !== want[r]) {
              const { penalized, ...shown } = sample[r];
              throw new Error(`call ${call}, row ${r} (logits row ${tokens[r]}, width ${width}): runSample gave ${ids[r]}, TokenFilter picks ${want[r]} with ${JSON.stringify(shown)} and ${penalized.length} penalized ids`);
            }
          }
        }
        // One sample row short of the step's selected rows: a BackendError naming `rows`.
        const batch = stepBatch([{ tokens: [0, 1], cached: 0, blocks: [0] }], 16, 'all');
        const refused = await p.runSample(batch, [{ ...sets[0], uniform: 0.5, penalized: new Int32Array(0) }]).then(() => null, (e: unknown) => e);
        const info = (refused as { code?: string; info?: { field?: string } } | null)?.info;
        if ((refused as { code?: string } | null)?.code !== 'E_BACKEND' || info?.field !== 'rows') {
          throw new Error(`runSample with 1 sample row for 2 selected rows should reject with a BackendError naming rows, got ${refused === null ? 'ids' : String(refused)}`);
        }
      });
    },
  }));
}

/** Up to 12 distinct ids, the peaks' ids among them (so the penalty moves the top). */
function distinctIds(width: number, rand: () => number): Int32Array {
  const ids = new Set<number>([1, 2].filter((i) => i < width));
  while (ids.size < Math.min(12, width)) ids.add(Math.floor(rand() * width));
  return Int32Array.from(ids);
}
