// Program.runArgmax, where a backend has it: the ids must be exactly what the greedy Sampler picks from
// run()'s logits of the same step (NaN counts as -Infinity, the lowest id wins a tie, a row with nothing
// above -Infinity gives 0), at widths that put ties and extremes inside one block of a device kernel and
// across blocks, and at the odd vocabulary sizes real models have (GPT-2's 50,257).
import { DEFAULT_SAMPLING } from '../sampling/params.js';
import { Sampler } from '../sampling/sampler.js';
import { stepBatch } from './batch.js';
import { caseRng, opGraph, withProgram, type ConformanceCase, type Harness } from './harness.js';
import { tensorOf } from './weights.js';

const WIDTHS = [1, 5, 2047, 2049, 50257];

/** Rows of logits of `width` with the cases that break a careless argmax; small integers, so every activation dtype holds them exactly. */
function trickyRows(width: number, rand: () => number): number[][] {
  const { NaN: N } = Number;
  const at = (fill: number, set: [number, number][]) => {
    const row = new Array<number>(width).fill(fill);
    for (const [i, v] of set) if (i < width) row[i] = v;
    return row;
  };
  const noise = () => Array.from({ length: width }, () => Math.floor(rand() * 2001) - 1000);
  const last = width - 1;
  return [
    noise(), // a unique maximum somewhere (almost surely)
    at(-5, [[last, 7], [3, 7], [2048 + 5, 7]]), // a tie within a block and across blocks: the lowest id
    at(-Infinity, [[0, N]]), // NaN first, the rest masked: nothing above -Infinity → 0
    at(N, []), // every logit NaN → 0
    at(-Infinity, []), // every logit masked → 0
    at(N, [[last, -Infinity], [Math.floor(width / 2), -3]]), // NaN around one finite value
    at(1, [[2500, Infinity], [40000, Infinity], [last, N]]), // +Infinity twice: the first
    at(-1000, [[last, -999]]), // the maximum in the very last column
  ];
}

export function argmaxCases(h: Harness): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  for (const width of WIDTHS) {
    cases.push({
      name: `runArgmax: the greedy sampler's ids from run()'s logits, width ${width}`,
      run: async () => {
        const rng = caseRng(h, `argmax ${width}`);
        const rows = trickyRows(width, () => rng.next());
        const tensors = new Map([['logits', tensorOf('f32', [rows.length, width], rows.flat())]]);
        const graph = opGraph(tensors, (_b, input) => input('logits')); // row r of the output = table row r
        await withProgram(h.backend, graph, tensors, { numBlocks: 1, blockSize: 16 }, async (p) => {
          if (!p.runArgmax) return; // optional in the contract
          // Steps of changing size on one program, as a server's batches shrink and grow: state a device
          // keeps between calls (scratch, counters) must not leak from one step's layout into the next.
          for (const [call, count] of [rows.length, 1, 5, rows.length, 3].entries()) {
            // Rows in another order each call: an id left unwritten would not survive as last call's right answer.
            const tokens = Array.from({ length: count }, (_, r) => (r + 3 * call) % rows.length);
            const batch = stepBatch([{ tokens, cached: 0, blocks: [0] }], 16, 'all');
            const logits = await p.run(batch);
            const ids = await p.runArgmax(batch);
            if (ids.length !== count) throw new Error(`runArgmax returned ${ids.length} ids for ${count} rows`);
            for (let r = 0; r < count; r++) {
              const want = new Sampler({ ...DEFAULT_SAMPLING, temperature: 0 }, width).sample(logits.subarray(r * width, (r + 1) * width), []);
              if (ids[r] !== want) throw new Error(`row ${r} of ${count} (width ${width}): runArgmax gave ${ids[r]}, the greedy sampler picks ${want} from run()'s logits`);
            }
          }
        });
      },
    });
  }
  return cases;
}
