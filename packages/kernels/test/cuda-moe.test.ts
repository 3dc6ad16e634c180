// The CUDA backend's Mixture-of-Experts launches, without a GPU: the recording Gpu checks every launch
// against cuda/moe.cu's parsed signatures and every pointer against the bytes the kernel touches (from its
// arguments and grid), here for the router, the GEMV path (≤ 8 rows), the grouped path (more rows), the
// combine and the sigmoid gate, in every dtype mode; graph capture of MoE decode steps; expert-parallel
// subsets; expertLoad; and the MoE fixtures (fixtures/moe) compiling and stepping on the fake driver.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, GraphBuilder, loadModel, Rng, type FloatDType, type Graph, type HostTensor } from '@zinfer/core';
import { memoryWeights, randomTensor, range, stepBatch, weightInfos } from '@zinfer/core/testing';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import { sideBySideWeights, type ActivationChoice } from '../src/cuda/device-weights.js';
import { largeLayout, MOE_TILE, moeRoutingValues, routerSplits, setRouterMode } from '../src/cuda/moe-launch.js';
import { denseLayout, densePassRows, MOE_DENSE_MAX_ROWS, setMoeDensePassBytes } from '../src/cuda/moe-dense.js';
import { groupedLayoutFor, groupSlots, moeGroupedLayout, ROW_GRAIN, setMoeGroupedPassBytes } from '../src/cuda/moe-grouped-gemm.js';
import { moePrefill, moeStepPath } from '../src/cuda/moe-prefill.js';
import { RecordingGpu, type RecordedLaunch } from '../src/cuda/recording-gpu.js';
import { supports } from '../src/cuda/supports.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/moe');
const MOE_ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
const SETTINGS: CompileSettings = {
  activations: 'f32', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 16, flash: true, fusion: { linear: true, rope: true },
};
const NO_KV = { layers: 0, kvHeads: 1, headDim: 1 };
const BYTES: Record<string, number> = { f32: 4, f16: 2, bf16: 2 };
const n = (v: bigint | number) => Number(v);

interface MoeShape {
  hidden: number;
  inter: number;
  experts: number;
  topK: number;
  /** Global ids this program holds (default: all). */
  held?: number[];
  dtype?: FloatDType;
}

/** x = embedding(ids) → router → experts (+ a sigmoid-gated copy of x): the op graph of one MoE layer. */
function moeGraph(s: MoeShape, seed = 1): { graph: Graph; tensors: Map<string, HostTensor> } {
  const rng = Rng.fromSeed(seed);
  const dt = s.dtype ?? 'f32';
  const tensors = new Map<string, HostTensor>([
    ['emb', randomTensor(rng, 'f32', [64, s.hidden])],
    ['router', randomTensor(rng, dt, [s.experts, s.hidden])],
    ['gateEmb', randomTensor(rng, 'f32', [64, 1])],
  ]);
  const held = s.held ?? range(s.experts);
  for (const e of held) {
    tensors.set(`g${e}`, randomTensor(rng, dt, [s.inter, s.hidden], 1 / Math.sqrt(s.hidden)));
    tensors.set(`u${e}`, randomTensor(rng, dt, [s.inter, s.hidden], 1 / Math.sqrt(s.hidden)));
    tensors.set(`d${e}`, randomTensor(rng, dt, [s.hidden, s.inter], 1 / Math.sqrt(s.inter)));
  }
  const b = new GraphBuilder(weightInfos(tensors), NO_KV);
  const x = b.embedding(b.inputs.tokenIds, 'emb');
  const routing = b.moeRouter(x, 'router', s.topK, true);
  const y = b.moeExperts(x, routing, { topK: s.topK, fn: 'silu', experts: held.map((id) => ({ id, gate: `g${id}`, up: `u${id}`, down: `d${id}` })) });
  const gated = b.sigmoidGate(x, b.embedding(b.inputs.tokenIds, 'gateEmb'));
  return { graph: b.build(b.add(y, gated)), tensors };
}

/** Bytes each MoE kernel touches through each pointer argument, from its arguments and grid. */
function moeNeeds(l: RecordedLaunch, A: number, W: number): Record<number, number> {
  const a = l.args;
  if (l.kernel.startsWith('moe_router_split_')) {
    const [hidden, experts, topK] = [n(a[3]), n(a[4]), n(a[5])];
    const rows = l.grid.x;
    assert.is(l.grid.y, experts, `${l.kernel}: a block per row and expert`);
    return { 0: rows * 2 * topK * 4, 1: experts * hidden * W, 2: rows * hidden * A, 7: experts * 8, 8: rows * 4, 10: rows * hidden * A, 11: hidden * 4, 13: rows * experts * 4, 14: rows * 4 };
  }
  if (l.kernel.startsWith('moe_router_')) {
    const [hidden, experts, topK] = [n(a[3]), n(a[4]), n(a[5])];
    return { 0: l.grid.x * 2 * topK * 4, 1: experts * hidden * W, 2: l.grid.x * hidden * A, 7: experts * 8, 8: l.grid.x * 4, 10: l.grid.x * hidden * A, 11: hidden * 4 };
  }
  if (/^moe_gate_up(\d|_m)_/.test(l.kernel)) {
    const [nLocal, mapLen, rows, topK, hidden, inter] = [n(a[4]), n(a[5]), n(a[8]), n(a[9]), n(a[10]), n(a[11])];
    const features = l.kernel.startsWith('moe_gate_up_m_') ? 8 : 2; // a block's features: the tensor-core entry's 8
    assert.ok(l.grid.x * features >= inter && (l.grid.x - 1) * features < inter, `${l.kernel}: grid covers the intermediate features`);
    if (features === 8) assert.ok(hidden % 8 === 0 && inter % 8 === 0 && rows >= 2 && rows <= 8, `${l.kernel}: whole 16-byte vectors, 2–8 rows`);
    const slots = rows * topK;
    return { 0: slots * inter * A, 1: rows * hidden * A, 2: rows * 2 * topK * 4, 3: nLocal * 24 + mapLen * 4, 6: 4, 7: slots * 4 };
  }
  if (/^moe_down(\d|_m)_/.test(l.kernel)) {
    const [nLocal, mapLen, rows, topK, hidden, inter] = [n(a[4]), n(a[5]), n(a[6]), n(a[7]), n(a[8]), n(a[9])];
    const features = l.kernel.startsWith('moe_down_m_') ? 16 : 4;
    assert.ok(l.grid.x * features >= hidden && (l.grid.x - 1) * features < hidden, `${l.kernel}: grid covers the hidden features`);
    const R = features === 16 ? 8 : Number(/^moe_down(\d)/.exec(l.kernel)![1]);
    assert.ok(rows <= R, `${l.kernel}: ${rows} rows`);
    return { 0: rows * hidden * A, 1: rows * topK * inter * A, 2: rows * 2 * topK * 4, 3: nLocal * 24 + mapLen * 4 };
  }
  if (l.kernel.startsWith('moe_down_tiles_')) {
    assert.ok(l.grid.x * 4 >= n(a[5]), `${l.kernel}: grid covers the hidden features`);
    return { 0: 0, 1: 0, 3: 4 }; // y and h are sized from the matching combine / gate-up launches
  }
  if (l.kernel.startsWith('moe_dense_act_')) {
    const [experts, rows, inter] = [n(a[2]), n(a[3]), n(a[4])];
    return { 0: experts * rows * inter * A, 1: 2 * experts * rows * inter * 4 };
  }
  if (l.kernel === 'moe_permute') {
    const [nLocal, mapLen, rows, topK] = [n(a[4]), n(a[5]), n(a[6]), n(a[7])];
    const slots = rows * topK;
    return { 0: (1 + 3 * (Math.ceil(slots / MOE_TILE) + nLocal)) * 4, 1: slots * 4, 2: rows * 2 * topK * 4, 3: nLocal * 24 + mapLen * 4 };
  }
  if (l.kernel.startsWith('moe_combine_')) {
    const [nLocal, mapLen, rows, topK, hidden, layout] = [n(a[4]), n(a[5]), n(a[6]), n(a[7]), n(a[8]), n(a[9])];
    const common = { 0: rows * hidden * A, 2: rows * 2 * topK * 4, 3: nLocal * 24 + mapLen * 4 };
    // Grouped (layout 2): y's rows are the step's grouped rows, which only the host's grouping knows.
    return layout === 2 ? { ...common, 10: rows * topK * 4 } : { ...common, 1: (layout === 1 ? nLocal : topK) * rows * hidden * 4 };
  }
  if (l.kernel.startsWith('sigmoid_gate_')) {
    const [count, width] = [n(a[3]), n(a[4])];
    return { 0: count * A, 1: count * A, 2: (count / width) * A };
  }
  return {};
}

function checkMoeLaunches(gpu: RecordingGpu, from: number, act: FloatDType): RecordedLaunch[] {
  const moe = gpu.launches.slice(from).filter((l) => /^(moe_|sigmoid_gate_)/.test(l.kernel));
  for (const l of moe) {
    const m = /_(f32|f16|bf16)_(f32|f16|bf16)$/.exec(l.kernel);
    const W = m ? BYTES[m[1]] : BYTES[act];
    for (const [i, bytes] of Object.entries(moeNeeds(l, BYTES[act], W))) {
      const ptr = l.args[Number(i)] as bigint;
      if (ptr === 0n || bytes === 0) continue;
      assert.ok(bytes <= gpu.extent(ptr), `${l.kernel} argument ${i} needs ${bytes} bytes, its buffer has ${gpu.extent(ptr)}`);
    }
  }
  return moe;
}

const kernelsOf = (ls: RecordedLaunch[]) => ls.map((l) => l.kernel.replace(/_(f32|f16|bf16)(_(f32|f16|bf16))?$/, ''));

test('supports: router, experts and sigmoid gate; top-k beyond 16 or beyond the experts refused', () => {
  const { graph } = moeGraph({ hidden: 16, inter: 8, experts: 4, topK: 2 });
  for (const node of graph.nodes) assert.ok(supports(node), node.op);
  const router = graph.nodes.find((x) => x.op === 'moeRouter')!;
  assert.not.ok(supports({ ...router, attrs: { ...router.attrs, topK: 5 } } as typeof router), 'topK > experts');
  const experts = graph.nodes.find((x) => x.op === 'moeExperts')!;
  assert.not.ok(supports({ ...experts, attrs: { ...experts.attrs, topK: 17 } } as typeof experts), 'topK > 16');
  assert.equal([...moeRoutingValues(graph)], [router.output]);
});

for (const [act, dtype] of [['f32', 'f32'], ['f32', 'bf16'], ['f16', 'f16'], ['bf16', 'bf16']] as [FloatDType, FloatDType][]) {
  test(`MoE layer (${dtype} weights, ${act} activations): GEMV path up to 8 rows, ${dtype === act ? 'dense GEMMs to 64, ' : ''}grouped path beyond, launches within bounds`, async () => {
    const shape = { hidden: 40, inter: 24, experts: 6, topK: 2, dtype };
    const { graph, tensors } = moeGraph(shape);
    assert.equal(sideBySideWeights(graph), [range(6).flatMap((e) => [`g${e}`, `u${e}`]), range(6).map((e) => `d${e}`)], 'gate|up interleaved, then the downs');
    const gpu = new RecordingGpu();
    const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 8, blockSize: 16 } }, { ...SETTINGS, activations: act });
    moePrefill.set('tiles'); // the tile path past 64 rows ('auto' would take 6 experts of top-2 dense: below)
    for (const rows of [1, 3, 8, 9, 64, 65, 300]) {
      const from = gpu.launches.length;
      const gemmsFrom = gpu.gemms.length;
      const out = await program.run(stepBatch([{ tokens: range(rows).map((i) => i % 64), cached: 0, blocks: range(Math.ceil(rows / 16)) }], 16, 'all'));
      assert.is(out.length, rows * shape.hidden);
      const moe = checkMoeLaunches(gpu, from, act);
      const R = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
      // Experts side by side in the activation dtype (not bf16 weights under f32 activations): dense GEMMs.
      const dense = rows > 8 && rows <= MOE_DENSE_MAX_ROWS && dtype === act;
      // 2–8 rows in the 16-bit modes: the tensor-core entries (hidden 40 and inter 24 are whole 16-byte vectors).
      const mma = rows >= 2 && rows <= 8 && act !== 'f32' && dtype === act;
      const want = rows <= 8 ? ['moe_router_split', mma ? 'moe_gate_up_m' : `moe_gate_up${R}`, mma ? 'moe_down_m' : `moe_down${R}`, 'sigmoid_gate']
        : dense ? ['moe_router', 'moe_dense_act', 'moe_combine', 'sigmoid_gate'] : ['moe_router', 'moe_permute', 'moe_gate_up8', 'moe_down_tiles', 'moe_combine', 'sigmoid_gate'];
      assert.equal(kernelsOf(moe), want, `${rows} rows`);
      const gemms = gpu.gemms.slice(gemmsFrom).filter((g) => g.batch && g.yDtype === 'f32');
      if (dense) {
        const [act_, combine] = moe.slice(1, 3);
        const { experts: E, hidden, inter } = shape;
        assert.equal(gemms.map((g) => [g.rows, g.inF, g.outF, g.batch]), [
          [rows, hidden, inter, { count: 2 * E, strideW: inter * hidden, strideY: rows * inter }],
          [rows, inter, hidden, { count: E, strideW: hidden * inter, strideY: rows * hidden, strideX: rows * inter }],
        ], 'gate|up of every expert as one batch on the shared input, then every down on its own h');
        assert.equal([gemms[0].y, act_.args[0], gemms[1].y], [act_.args[1], gemms[1].x, combine.args[1]], 'gate|up → act → h → down → y → combine');
        assert.is(combine.args[9], 1, 'the combine reads y [experts, rows, hidden]');
        const d = { count: E, gateUp: 0n, down: 0n, hidden, inter };
        const at = denseLayout(d, rows, BYTES[act]);
        assert.ok(gpu.extent(gemms[0].y) >= at.total, 'scratch holds gate|up, h and y');
        continue;
      }
      assert.is(gemms.length, 0, 'no expert GEMMs off the dense path');
      const gateUp = moe.find((l) => l.kernel.startsWith('moe_gate_up'))!;
      const slots = rows * shape.topK;
      assert.is(gateUp.grid.y, rows <= 8 ? slots : Math.ceil(slots / MOE_TILE) + shape.experts, 'a block row per possible tile');
      if (rows > 8) {
        const [permute, , downTiles, combine] = moe.slice(1);
        assert.is(permute.grid.x, 1);
        assert.is(downTiles.grid.y, gateUp.grid.y);
        const base = permute.args[0] as bigint;
        const at = largeLayout(slots, gateUp.grid.y, Math.ceil((slots * shape.inter * BYTES[act]) / 256) * 256, shape.hidden);
        assert.equal([permute.args[1], gateUp.args[0], downTiles.args[0], combine.args[1], combine.args[9]], [base + BigInt(at.order), base + BigInt(at.h), base + BigInt(at.y), base + BigInt(at.y), 0]);
        assert.ok(gpu.extent(base) >= at.total, 'scratch holds tiles, order, h and y');
      }
    }
    moePrefill.set('auto');
    await program.dispose();
    assert.is(gpu.live.size, 0, 'tables, counters and scratch freed');
  });
}

test('routerSplits: a block per row and expert for up to 8 rows of whole vectors that a block holds; ZINFER_ROUTER=block turns it off', () => {
  assert.ok(routerSplits(1, 4096, 2, 2), 'Mixtral, 16-bit');
  assert.ok(routerSplits(8, 8192, 2, 2), '8,192 16-bit elements: 4 vectors a thread');
  assert.not.ok(routerSplits(8, 8200, 2, 2), 'more than a block holds');
  assert.not.ok(routerSplits(9, 4096, 2, 2), 'more rows than a decode step');
  assert.ok(routerSplits(1, 4096, 2, 4), 'bf16 weights on f32 activations: 4,096 at most');
  assert.not.ok(routerSplits(1, 4100, 2, 4), 'not whole weight vectors');
  assert.not.ok(routerSplits(1, 6144, 2, 4));
  assert.ok(routerSplits(1, 40, 4, 4));
  setRouterMode('block');
  try {
    assert.not.ok(routerSplits(1, 4096, 2, 2));
  } finally {
    setRouterMode('split');
  }
});

test("a 150-row step of 6 experts of top-2 runs dense ('auto'), in passes of 64, 64 and 22 rows when a pass's scratch holds 64, each on its own rows of x, output and routing", async () => {
  const shape = { hidden: 40, inter: 24, experts: 6, topK: 2, dtype: 'bf16' as FloatDType };
  const { graph, tensors } = moeGraph(shape);
  const gpu = new RecordingGpu();
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 16, blockSize: 16 } }, { ...SETTINGS, activations: 'bf16' });
  const d = { count: 6, gateUp: 0n, down: 0n, hidden: 40, inter: 24 };
  assert.is(densePassRows(d, 150, 2), 150, 'the default scratch holds every row of a small layer');
  const perRow = denseLayout(d, 1, 2).total;
  setMoeDensePassBytes(64 * perRow + perRow - 1);
  try {
    assert.is(densePassRows(d, 150, 2), 64);
    assert.is(densePassRows(d, 40, 2), 40);
    const from = gpu.launches.length;
    const gemmsFrom = gpu.gemms.length;
    await program.run(stepBatch([{ tokens: range(150).map((i) => i % 64), cached: 0, blocks: range(10) }], 16, 'all'));
    const moe = checkMoeLaunches(gpu, from, 'bf16');
    const pass = ['moe_dense_act', 'moe_combine'];
    assert.equal(kernelsOf(moe), ['moe_router', ...pass, ...pass, ...pass, 'sigmoid_gate']);
    const gemms = gpu.gemms.slice(gemmsFrom).filter((g) => g.batch && g.yDtype === 'f32');
    assert.equal(gemms.map((g) => g.rows), [64, 64, 64, 64, 22, 22], 'gate|up then down, a pass at a time');
    const combines = moe.filter((l) => l.kernel.startsWith('moe_combine'));
    const [out0, , routing0] = combines[0].args as bigint[];
    const x0 = gemms[0].x;
    const rowBytes = BigInt(shape.hidden * 2);
    const routingBytes = BigInt(2 * shape.topK * 4);
    combines.forEach((c, i) => {
      const r0 = BigInt(64 * i);
      assert.equal([c.args[0], c.args[2], c.args[6], c.args[9]], [out0 + r0 * rowBytes, routing0 + r0 * routingBytes, i < 2 ? 64 : 22, 1], `pass ${i}: output, routing, rows`);
      assert.is(gemms[2 * i].x, x0 + r0 * rowBytes, `pass ${i}: x`);
      assert.is(gemms[2 * i].y, gemms[0].y, 'one scratch serves every pass');
    });
    assert.ok(moe[0].args.includes(routing0), 'the router writes the routing the first pass reads');
  } finally {
    setMoeDensePassBytes(256 * 2 ** 20);
  }
  await program.dispose();
});

test("moeStepPath: dense to 64 rows; past them 'auto' groups where the step is not captured and the experts outnumber top-k with enough slots each (64; batched, 16), else dense", async () => {
  assert.is(moeStepPath(64, 60, 1, false), 'dense', 'a decode batch');
  assert.is(moeStepPath(255, 8, 2, false), 'dense', 'Mixtral: 8 experts of top-2 get 64 slots each from 256 rows');
  assert.is(moeStepPath(256, 8, 2, false), 'grouped');
  assert.is(moeStepPath(4096, 2, 2, false), 'dense', 'an ep-4 rank of Mixtral: dense computes nothing extra');
  assert.is(moeStepPath(239, 60, 4, false), 'dense', "Qwen2-MoE's 60 experts of top-4, batched, get 16 slots each from 240 rows");
  assert.is(moeStepPath(240, 60, 4, false), 'grouped');
  assert.equal([groupedLayoutFor(8), groupedLayoutFor(16), groupedLayoutFor(17)], ['experts', 'experts', 'batched']);
  moeGroupedLayout.set('experts');
  assert.is(moeStepPath(900, 60, 4, false), 'dense', 'a launch triple an expert wants 64 slots each');
  moeGroupedLayout.set('auto');
  assert.is(moeStepPath(4096, 8, 2, true), 'dense', 'a captured step cannot wait for the host');
  moePrefill.set('grouped');
  assert.is(moeStepPath(65, 60, 4, false), 'grouped');
  assert.is(moeStepPath(65, 60, 4, true), 'dense');
  assert.is(moeStepPath(64, 60, 4, false), 'dense');
  moePrefill.set('dense');
  assert.is(moeStepPath(4096, 60, 4, false), 'dense');
  moePrefill.set('tiles');
  assert.is(moeStepPath(4096, 8, 2, false), 'tiles');
  assert.is(moeStepPath(64, 8, 2, false), 'dense');
  moePrefill.set('auto');
  assert.throws(() => moePrefill.set('fused' as 'auto'), /ZINFER_MOE_PREFILL \(set\) is 'fused'; it takes auto, grouped, dense, tiles/);
  assert.throws(() => setMoeDensePassBytes(0), /positive integer/);
  // Weights in another dtype than the activations (not side by side for cuBLAS): the tile path at 100 rows.
  const { graph, tensors } = moeGraph({ hidden: 40, inter: 24, experts: 9, topK: 2, dtype: 'bf16' });
  const gpu = new RecordingGpu();
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 8, blockSize: 16 } }, { ...SETTINGS, activations: 'f32' });
  const from = gpu.launches.length;
  await program.run(stepBatch([{ tokens: range(100).map((i) => i % 64), cached: 0, blocks: range(7) }], 16, 'all'));
  assert.equal(kernelsOf(checkMoeLaunches(gpu, from, 'f32')), ['moe_router', 'moe_permute', 'moe_gate_up8', 'moe_down_tiles', 'moe_combine', 'sigmoid_gate']);
  await program.dispose();
});

test('groupSlots: slots grouped by local expert in slot order, each expert padded to a multiple of 32 rows (or all to the largest); experts held elsewhere left out', () => {
  // 3 rows of top-2 over global experts 0–3, of which this program holds 3 (local 0) and 1 (local 1).
  const map = Int32Array.of(-1, 1, -1, 0);
  const routing = Float32Array.of(3, 1, 0.6, 0.4, 0, 3, 0.7, 0.3, 1, 2, 0.9, 0.1);
  const g = groupSlots(routing, 3, 2, map, 2);
  assert.equal([g.count, g.rows, g.start, g.total], [[2, 2], [ROW_GRAIN, ROW_GRAIN], [0, ROW_GRAIN], 2 * ROW_GRAIN]);
  assert.equal([...g.inv], [0, ROW_GRAIN, -1, 1, ROW_GRAIN + 1, -1], 'slot → grouped row');
  assert.equal([...g.src.slice(0, 3)], [0, 1, 0], "expert 3's rows: 0, 1, then padding (row 0)");
  assert.equal([...g.src.slice(ROW_GRAIN, ROW_GRAIN + 3)], [0, 2, 0], "expert 1's rows: 0, 2, then padding");
  const uniform = groupSlots(Float32Array.of(3, 1, 0.6, 0.4, 0, 3, 0.7, 0.3, 3, 2, 0.9, 0.1), 3, 2, map, 2, true);
  assert.equal([uniform.count, uniform.rows, uniform.start], [[3, 1], [ROW_GRAIN, ROW_GRAIN], [0, ROW_GRAIN]], 'uniform: every expert as many rows as the largest');
  const none = groupSlots(Float32Array.of(0, 2, 0.5, 0.5), 1, 2, map, 2);
  assert.equal([none.total, [...none.inv]], [0, [-1, -1]], 'nothing local: no grouped rows');
});

for (const layout of ['batched', 'experts'] as const) {
  test(`the grouped path (${layout}): the routing read back, x gathered in expert order, the experts' gate|up, activation and down over their rows, the combine through inv`, async () => {
    const shape = { hidden: 40, inter: 24, experts: 6, topK: 2, dtype: 'bf16' as FloatDType };
    const { graph, tensors } = moeGraph(shape);
    const gpu = new RecordingGpu({ keepUploads: true });
    const rows = 300;
    // Row r routes to experts r % 6 and (r + 1) % 6, weights 0.75 and 0.25 (as the device would have written
    // it), except that rows ≡ 0 (mod 6) route to experts 0 and 2, so the experts take unequal numbers of slots.
    const routing = new Float32Array(rows * 4);
    for (let r = 0; r < rows; r++) routing.set(r % 6 === 0 ? [0, 2, 0.75, 0.25] : [r % 6, (r + 1) % 6, 0.75, 0.25], 4 * r);
    const expertOf = (s: number) => Math.trunc(routing[4 * (s >> 1) + (s & 1)]);
    const counts = range(6).map((e) => range(rows * 2).filter((s) => expertOf(s) === e).length);
    const downloads: bigint[] = [];
    const record = gpu.download.bind(gpu);
    (gpu as { download: RecordingGpu['download'] }).download = (dst, src) => {
      record(dst, src);
      if (dst.byteLength !== routing.byteLength) return; // the step's output
      downloads.push(src);
      new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(new Uint8Array(routing.buffer));
    };
    const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 32, blockSize: 16 } }, { ...SETTINGS, activations: 'bf16' });
    moeGroupedLayout.set(layout);
    try {
      const from = gpu.launches.length;
      const gemmsFrom = gpu.gemms.length;
      await program.run(stepBatch([{ tokens: range(rows).map((i) => i % 64), cached: 0, blocks: range(19) }], 16, 'all'));
      const moe = checkMoeLaunches(gpu, from, 'bf16');
      const acts = layout === 'batched' ? ['moe_dense_act'] : range(6).map(() => 'moe_dense_act');
      assert.equal(kernelsOf(moe), ['moe_router', ...acts, 'moe_combine', 'sigmoid_gate']);
      const routingPtr = moe[0].args.find((a) => downloads.includes(a as bigint)) as bigint;
      assert.ok(routingPtr !== undefined, "the host read the router's output");
      const gather = gpu.launches.slice(from).find((l) => l.kernel === 'gather_rows_bf16')!;
      const combine = moe.find((l) => l.kernel.startsWith('moe_combine'))!;
      assert.equal([combine.args[2], combine.args[6], combine.args[9]], [routingPtr, rows, 2]);
      // Each expert's GEMM rows: its slots rounded up to 32, or (batched) the largest expert's.
      const grain = (c: number) => Math.ceil(c / ROW_GRAIN) * ROW_GRAIN;
      const m = counts.map((c) => (layout === 'batched' ? grain(Math.max(...counts)) : grain(c)));
      const start = m.map((_, e) => m.slice(0, e).reduce((a, b) => a + b, 0));
      assert.is(gather.grid.x, start[5] + m[5]);
      const src = new Int32Array(gpu.uploads.get(gather.args[2] as bigint)!.buffer);
      const inv = new Int32Array(gpu.uploads.get(combine.args[10] as bigint)!.buffer);
      assert.is(inv.length, rows * 2);
      for (let s = 0; s < rows * 2; s++) {
        const e = expertOf(s);
        assert.ok(inv[s] >= start[e] && inv[s] < start[e] + counts[e], `slot ${s} in expert ${e}'s rows`);
        assert.is(src[inv[s]], s >> 1, `slot ${s} reads its row`);
      }
      const gemms = gpu.gemms.slice(gemmsFrom).filter((g) => g.yDtype === 'f32');
      const xg = gather.args[0] as bigint;
      const y = combine.args[1] as bigint;
      const rowBytes = BigInt(shape.hidden * 2);
      const { inter, hidden } = shape;
      if (layout === 'batched') {
        assert.equal(gemms.map((g) => [g.rows, g.x, g.batch]), [
          [m[0], xg, { count: 6, strideW: 2 * inter * hidden, strideY: 2 * m[0] * inter, strideX: m[0] * hidden }],
          [m[0], xg, { count: 6, strideW: 2 * inter * hidden, strideY: 2 * m[0] * inter, strideX: m[0] * hidden }],
          [m[0], gemms[2].x, { count: 6, strideW: hidden * inter, strideY: m[0] * hidden, strideX: m[0] * inter }],
        ], 'gates, ups and downs of every expert as three strided batches');
        assert.is(gemms[1].w - gemms[0].w, BigInt(inter * hidden * 2), 'the ups start one matrix after the gates');
        assert.is(gemms[1].y - gemms[0].y, BigInt(m[0] * inter * 4), "an expert's up rows follow its gate rows");
        assert.is(gemms[2].y, y);
      } else {
        assert.is(gemms.length, 12, 'gate|up and down for each of the 6 experts');
        gemms.forEach((g, i) => {
          const e = i >> 1;
          assert.is(g.rows, m[e]);
          if (i % 2 === 0) assert.equal([g.x, g.batch], [xg + BigInt(start[e]) * rowBytes, { count: 2, strideW: inter * hidden, strideY: m[e] * inter }], `expert ${e}: gate|up on its rows`);
          else assert.equal([g.y, g.batch], [y + BigInt(start[e] * hidden * 4), undefined], `expert ${e}: down into its rows of y`);
        });
      }
    } finally {
      moeGroupedLayout.set('auto');
    }
    await program.dispose();
  });
}

test('the grouped path in passes: a step whose grouping outgrows the pass scratch runs in passes of whole 64-row multiples, each on its own rows of x, output and routing', async () => {
  const shape = { hidden: 40, inter: 24, experts: 6, topK: 2, dtype: 'bf16' as FloatDType };
  const { graph, tensors } = moeGraph(shape);
  const gpu = new RecordingGpu({ keepUploads: true });
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 32, blockSize: 16 } }, { ...SETTINGS, activations: 'bf16' });
  moePrefill.set('grouped');
  setMoeGroupedPassBytes(150_000); // the tiny layer's 300 rows take ~220 KB of scratch in one pass
  try {
    const from = gpu.launches.length;
    await program.run(stepBatch([{ tokens: range(300).map((i) => i % 64), cached: 0, blocks: range(19) }], 16, 'all'));
    const launches = gpu.launches.slice(from);
    const combines = launches.filter((l) => l.kernel.startsWith('moe_combine'));
    const gathers = launches.filter((l) => l.kernel === 'gather_rows_bf16');
    assert.ok(combines.length >= 2, `${combines.length} passes`);
    const rows = combines.map((c) => Number(c.args[6]));
    assert.is(rows.reduce((a, b) => a + b, 0), 300, 'the passes cover every row once');
    rows.slice(0, -1).forEach((n) => assert.is(n % 64, 0, 'passes of whole 64-row multiples'));
    const [out0, routing0] = [combines[0].args[0] as bigint, combines[0].args[2] as bigint];
    const x0 = gathers[0].args[1] as bigint;
    let r0 = 0;
    combines.forEach((c, i) => {
      assert.equal([c.args[0], c.args[2], gathers[i].args[1]], [out0 + BigInt(r0 * 80), routing0 + BigInt(r0 * 16), x0 + BigInt(r0 * 80)], `pass ${i} from row ${r0}`);
      const src = new Int32Array(gpu.uploads.get(gathers[i].args[2] as bigint)!.buffer);
      assert.ok(src.every((r) => r >= 0 && r < rows[i]), `pass ${i} gathers its own rows`);
      r0 += rows[i];
    });
  } finally {
    setMoeGroupedPassBytes(256 * 2 ** 20);
    moePrefill.set('auto');
  }
  await program.dispose();
});

test('a dense expert batch cuBLASLt refuses leaves the node on the tile path, from then on', async () => {
  const shape = { hidden: 40, inter: 24, experts: 6, topK: 2, dtype: 'f16' as FloatDType };
  const { graph, tensors } = moeGraph(shape);
  const gpu = new RecordingGpu();
  const record = gpu.gemm!;
  let refusals = 0;
  (gpu as { gemm: typeof record }).gemm = (g) => {
    if (g.batch?.count === 2 * shape.experts) {
      refusals++;
      throw new BackendError('cuBLASLt has no algorithm for a GEMM (test)');
    }
    record(g);
  };
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 8, blockSize: 16 } }, { ...SETTINGS, activations: 'f16' });
  for (const step of [0, 1]) {
    const from = gpu.launches.length;
    await program.run(stepBatch([{ tokens: range(20), cached: 0, blocks: range(2) }], 16, 'all'));
    assert.equal(kernelsOf(checkMoeLaunches(gpu, from, 'f16')), ['moe_router', 'moe_permute', 'moe_gate_up8', 'moe_down_tiles', 'moe_combine', 'sigmoid_gate'], `step ${step}`);
  }
  assert.is(refusals, 1, 'asked once');
  await program.dispose();
});

test('the RMSNorm before the router runs in the router launch, which writes the normalized rows the experts read; not when another reader comes first', async () => {
  const rng = Rng.fromSeed(3);
  const [hidden, inter, experts] = [48, 16, 4];
  const tensors = new Map<string, HostTensor>([
    ['emb', randomTensor(rng, 'f32', [64, hidden])], ['norm', randomTensor(rng, 'f32', [hidden])], ['router', randomTensor(rng, 'f32', [experts, hidden])],
    ['lin', randomTensor(rng, 'f32', [hidden, hidden])],
    ...range(experts).flatMap((e) => [[`g${e}`, randomTensor(rng, 'f32', [inter, hidden])], [`u${e}`, randomTensor(rng, 'f32', [inter, hidden])], [`d${e}`, randomTensor(rng, 'f32', [hidden, inter])]] as [string, HostTensor][]),
  ]);
  const build = (linearFirst: boolean) => {
    const b = new GraphBuilder(weightInfos(tensors), NO_KV);
    const x = b.embedding(b.inputs.tokenIds, 'emb');
    const xn = b.rmsNorm(x, 'norm', 1e-5);
    const early = linearFirst ? b.linear(xn, 'lin') : null; // a reader before the router
    const routing = b.moeRouter(xn, 'router', 2, true);
    const y = b.moeExperts(xn, routing, { topK: 2, fn: 'silu', experts: range(experts).map((id) => ({ id, gate: `g${id}`, up: `u${id}`, down: `d${id}` })) });
    return b.build(early ? b.add(y, early) : y);
  };
  for (const linearFirst of [false, true]) {
    const gpu = new RecordingGpu();
    const program = await compileProgram(gpu, build(linearFirst), memoryWeights(tensors), { kvCache: { numBlocks: 8, blockSize: 16 } }, SETTINGS);
    for (const rows of [1, 12]) {
      const from = gpu.launches.length;
      const gemmsFrom = gpu.gemms.length;
      await program.run(stepBatch([{ tokens: range(rows), cached: 0, blocks: [0] }], 16, 'all'));
      const ls = gpu.launches.slice(from);
      checkMoeLaunches(gpu, from, 'f32');
      const router = ls.find((l) => l.kernel.startsWith('moe_router_'))!;
      // The experts' input: the GEMV path's gate/up kernel, or the dense path's gate|up batch (12 rows).
      const dense = gpu.gemms.slice(gemmsFrom).find((g) => g.batch?.count === 2 * experts);
      const gateUp = { args: [0n, rows <= 8 ? ls.find((l) => l.kernel.startsWith('moe_gate_up'))!.args[1] : dense!.x] };
      const embedded = ls.find((l) => l.kernel.startsWith('embedding_'))!.args[0];
      if (!linearFirst) {
        assert.not.ok(ls.some((l) => l.kernel.startsWith('rms_norm_')), `${rows} rows: no norm launch`);
        assert.is(router.args[2], embedded, 'the router reads the norm input');
        assert.is(router.args[10], gateUp.args[1], 'and writes the rows the experts read');
        assert.ok(router.args[11] !== 0n, 'with the norm weight');
      } else {
        assert.ok(ls.some((l) => l.kernel.startsWith('rms_norm_')), `${rows} rows: the norm runs on its own`);
        assert.equal([router.args[10], router.args[11]], [0n, 0n]);
        assert.is(router.args[2], gateUp.args[1], 'router and experts read the norm output');
      }
    }
    await program.dispose();
  }
});

test('expert parallelism: a program holding experts {1, 4} of 6 maps the rest to nothing; a 16-bit mode stores routing in f32', async () => {
  const { graph, tensors } = moeGraph({ hidden: 32, inter: 16, experts: 6, topK: 2, held: [1, 4], dtype: 'bf16' });
  const gpu = new RecordingGpu();
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 2, blockSize: 16 } }, { ...SETTINGS, activations: 'bf16' });
  for (const rows of [2, 20]) {
    const from = gpu.launches.length;
    const gemmsFrom = gpu.gemms.length;
    await program.run(stepBatch([{ tokens: range(rows), cached: 0, blocks: [0, 1] }], 16, 'all'));
    const moe = checkMoeLaunches(gpu, from, 'bf16');
    // 2 rows: the GEMV path's gate/up kernel; 20: the dense path's combine (dense: y [experts, rows, hidden]), after batches of the 2 local experts.
    const mapped = moe.find((l) => l.kernel.startsWith(rows <= 8 ? 'moe_gate_up' : 'moe_combine'))!;
    assert.equal([mapped.args[4], mapped.args[5]], [2, 5], 'two local experts, ids up to 4');
    if (rows > 8) assert.equal(gpu.gemms.slice(gemmsFrom).map((g) => g.batch?.count), [4, 2], 'gate|up of 2 experts, then 2 downs');
    const router = moe[0];
    assert.ok(gpu.extent(router.args[0] as bigint) >= rows * 4 * 4, 'routing rows of 2·topK f32');
  }
  await program.dispose();
});

test('a routing that is the graph output comes back as it is stored (f32), with no 16-bit conversion', async () => {
  const rng = Rng.fromSeed(4);
  const tensors = new Map<string, HostTensor>([['emb', randomTensor(rng, 'bf16', [8, 24])], ['router', randomTensor(rng, 'bf16', [5, 24])]]);
  const b = new GraphBuilder(weightInfos(tensors), NO_KV);
  const graph = b.build(b.moeRouter(b.embedding(b.inputs.tokenIds, 'emb'), 'router', 3, false));
  const gpu = new RecordingGpu();
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 1, blockSize: 16 } }, { ...SETTINGS, activations: 'auto' });
  assert.is(program.activations, 'bf16');
  const from = gpu.launches.length;
  const out = await program.run(stepBatch([{ tokens: range(5), cached: 0, blocks: [0] }], 16, 'all'));
  assert.is(out.length, 5 * 6);
  assert.equal(gpu.launches.slice(from).map((l) => l.kernel), ['embedding_bf16_bf16', 'moe_router_split_bf16_bf16']);
  checkMoeLaunches(gpu, from, 'bf16');
  await program.dispose();
});

test('experts of different dtypes are refused naming the tensor', async () => {
  const { graph, tensors } = moeGraph({ hidden: 16, inter: 8, experts: 3, topK: 1 });
  tensors.set('u2', randomTensor(Rng.fromSeed(2), 'f16', [8, 16]));
  const gpu = new RecordingGpu();
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: { numBlocks: 1, blockSize: 16 } }, SETTINGS);
  try {
    await program.run(stepBatch([{ tokens: [1], cached: 0, blocks: [0] }], 16, 'all'));
    assert.unreachable('should have thrown');
  } catch (e) {
    assert.instance(e, BackendError);
    assert.match((e as BackendError).message, /expert 2/);
    assert.is((e as BackendError).info.tensor, 'u2');
  } finally {
    await program.dispose();
  }
});

for (const arch of MOE_ARCHS) {
  for (const activations of ['f32', 'bf16'] as ActivationChoice[]) {
    test(`MoE fixture ${arch} (${activations}): prompt, decode graphs (padded bucket not counted), expertLoad per layer`, async () => {
      const m = await loadModel(join(FIXTURES, arch));
      const gpu = new RecordingGpu();
      try {
        for (const node of m.graph.nodes) assert.ok(supports(node), `${arch}: ${node.op}`);
        const program = await compileProgram(gpu, m.graph, m.weights, { kvCache: { numBlocks: 8, blockSize: 16 } }, { ...SETTINGS, activations });
        const seqs = [[0, 1], [2, 3], [4, 5]];
        const act = program.activations;
        let from = gpu.launches.length;
        await program.run(stepBatch(seqs.map((blocks, i) => ({ tokens: range(20).map((t) => (t * 7 + i) % 50), cached: 0, blocks })), 16, 'last'));
        checkMoeLaunches(gpu, from, act);
        for (let t = 0; t < 3; t++) {
          from = gpu.launches.length;
          await program.run(stepBatch(seqs.map((blocks, i) => ({ tokens: [t + i], cached: 20 + t, blocks })), 16, 'last'));
          const moe = checkMoeLaunches(gpu, from, act);
          assert.ok(moe.length > 0);
          assert.ok(moe.every((l) => !!l.replay === (t >= 1)), `decode step ${t} ${t >= 1 ? 'replays the graph' : 'runs eagerly'}`);
          for (const r of moe.filter((l) => l.kernel.startsWith('moe_router_'))) {
            assert.is(r.grid.x, 4, 'padded to the 4-row bucket');
            assert.is(r.args[9], 8 * 16, 'padding rows (slot of the scratch block) are not counted');
          }
        }
        assert.is(program.stats.graphCaptures, 1);
        assert.is(program.stats.graphError, null);
        const routers = m.graph.nodes.filter((x) => x.op === 'moeRouter');
        const load = await program.expertLoad!();
        assert.equal(load.map((l) => l.length), routers.map((r) => (r.op === 'moeRouter' ? r.attrs.experts : 0)));
        const counters = new Set(gpu.launches.filter((l) => l.kernel.startsWith('moe_router_')).map((l) => l.args[7]));
        assert.is(counters.size, routers.length, 'one counter range per MoE layer');
        await program.dispose();
        assert.is(gpu.live.size, 0);
      } finally {
        m.weights.close();
      }
    });
  }
}

test.run();
