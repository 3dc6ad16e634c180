// The CUDA expert-parallel all-to-all (moeDispatch / moeCombine launches) executed, not just recorded: every
// rank's copy_* / add_* launches and NCCL allToAll / allGather calls run on emulated GPUs with real memory
// (poisoned with NaN), in lock-step across the ranks. Each rank's "experts" scale the dispatched rows by
// rank + 1, so the combined rows must be x · Σ(rank + 1) on every rank: for prompt-sized steps and for
// decode steps with fewer rows than shares (issue #7: one row over two ranks leaves a share empty).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FloatDType, MoeExchange, OpNode, ValueId } from '@zinfer/core';
import { launchMoeExchange } from '../src/cuda/moe-exchange-launch.js';
import type { StepContext } from '../src/cuda/step-context.js';
import { EmulatedGpu, runRanks } from './helpers/exchange-emulator.js';

const WIDTH = 6;
const TOP_K = 2;
const SCRATCH = 1 << 16;
const X = 0, ROUTING = 1, DX = 2, DR = 3, Y = 4, OUT = 5;
const WIDTHS = [WIDTH, 2 * TOP_K, WIDTH, 2 * TOP_K, WIDTH, WIDTH];
const BYTES: Record<FloatDType, number> = { f32: 4, f16: 2, bf16: 2 };

interface Rank {
  gpu: EmulatedGpu;
  ctx: StepContext;
  ptrs: bigint[];
}

/** A rank's step context over emulated memory: the values above (routing f32 as in every mode) and a scratch. */
function rank(r: number, rows: number, dtype: FloatDType): Rank {
  const gpu = new EmulatedGpu();
  const f32 = (id: number) => id === ROUTING || id === DR;
  const ptrs = WIDTHS.map((w, id) => gpu.alloc(rows * w * (f32(id) ? 4 : BYTES[dtype])));
  const scratch = gpu.alloc(SCRATCH);
  const ctx = {
    gpu: gpu.asGpu(),
    act: dtype,
    collectives: { tensor: gpu.collectives(), pipeline: null, rank: r },
    value: (id: ValueId) => ptrs[id],
    width: (id: ValueId) => WIDTHS[id],
    rowsOf: () => rows,
    isF32: () => false,
    scratch: (bytes: number) => {
      assert.ok(bytes <= SCRATCH, `scratch of ${bytes} bytes`);
      return scratch;
    },
  };
  return { gpu, ctx: ctx as unknown as StepContext, ptrs };
}

function nodes(exchange: MoeExchange) {
  const attrs = { exchange, topK: TOP_K };
  const dispatch = (part: 'x' | 'routing', output: number): OpNode<'moeDispatch'> => ({ op: 'moeDispatch', inputs: { x: X, routing: ROUTING }, attrs: { ...attrs, part }, output });
  const combine: OpNode<'moeCombine'> = { op: 'moeCombine', inputs: { x: Y, routing: ROUTING }, attrs, output: OUT };
  return { dx: dispatch('x', DX), dr: dispatch('routing', DR), combine };
}

/** One MoE layer's exchange over `exchange.ranks` emulated ranks; returns every rank's combined rows. */
function step(exchange: MoeExchange, rows: number, dtype: FloatDType): Float32Array[] {
  const ranks = Array.from({ length: exchange.ranks }, (_, r) => rank(r, rows, dtype));
  const x = Float32Array.from({ length: rows * WIDTH }, (_, i) => ((i * 7) % 13) + 1);
  const routing = Float32Array.from({ length: rows * 2 * TOP_K }, (_, i) => i * 0.5);
  const n = nodes(exchange);
  for (const { gpu, ptrs } of ranks) {
    gpu.write(ptrs[X], x, dtype);
    gpu.write(ptrs[ROUTING], routing, 'f32');
  }
  for (const { ctx } of ranks) {
    launchMoeExchange(ctx, n.dx, ctx.collectives.tensor!, dtype);
    launchMoeExchange(ctx, n.dr, ctx.collectives.tensor!, dtype);
  }
  runRanks(ranks.map((k) => k.gpu));
  ranks.forEach(({ gpu, ptrs }, r) => {
    assert.equal([...gpu.read(ptrs[DX], rows * WIDTH, dtype)], [...x], `rank ${r}: every row dispatched, in order`);
    assert.equal([...gpu.read(ptrs[DR], rows * 2 * TOP_K, 'f32')], [...routing], `rank ${r}: the routing, f32`);
    // The experts: this rank's (partial) result for every dispatched row.
    gpu.write(ptrs[Y], gpu.read(ptrs[DX], rows * WIDTH, dtype).map((v) => v * (r + 1)), dtype);
  });
  for (const { ctx } of ranks) launchMoeExchange(ctx, n.combine, ctx.collectives.tensor!, dtype);
  runRanks(ranks.map((k) => k.gpu));
  return ranks.map(({ gpu, ptrs }) => gpu.read(ptrs[OUT], rows * WIDTH, dtype));
}

const LAYOUTS: { name: string; ex: MoeExchange }[] = [
  { name: 'ep2', ex: { ranks: 2, slices: 1, owner: [0, 1, 0, 1], coordinated: false } },
  { name: 'ep4', ex: { ranks: 4, slices: 1, owner: [0, 1, 2, 3], coordinated: false } },
  { name: 'tp2 × ep2', ex: { ranks: 4, slices: 2, owner: [0, 1, 0, 1], coordinated: false } },
  { name: 'tp2 × ep2 coordinated', ex: { ranks: 4, slices: 2, owner: [0, 1, 0, 1], coordinated: true } },
];

function expectSums(out: Float32Array[], ranks: number, rows: number, what: string): void {
  const total = (ranks * (ranks + 1)) / 2;
  const want = Array.from({ length: rows * WIDTH }, (_, i) => (((i * 7) % 13) + 1) * total);
  out.forEach((o, r) => assert.equal([...o], want, `${what}: rank ${r}'s combined rows`));
}

for (const { name, ex } of LAYOUTS) {
  for (const rows of [1, 2, 3, 5, 8]) {
    test(`${name}, ${rows} row${rows > 1 ? 's' : ''}: dispatch and combine give Σ of every rank's rows`, () => {
      expectSums(step(ex, rows, 'f32'), ex.ranks, rows, `${name} ${rows} rows`);
    });
  }
}

for (const dtype of ['f16', 'bf16'] as const) {
  test(`${dtype}: 1- and 3-row steps over 2 and 4 ranks, routing dispatched as f32`, () => {
    for (const { name, ex } of [LAYOUTS[0], LAYOUTS[3]]) for (const rows of [1, 3]) expectSums(step(ex, rows, dtype), ex.ranks, rows, `${dtype} ${name} ${rows} rows`);
  });
}

test.run();
