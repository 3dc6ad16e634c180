// The CUDA backend's host-side logic, without a GPU: buffer planning, fusion planning, step metadata and
// decode padding, attention splits, and whole programs (tiny Llama in every weight dtype and activation
// mode, every fixture model) run on a recording Gpu that checks each launch against the kernel's parsed
// signature and each pointer against the bytes the kernel will touch. Decode steps are captured as CUDA
// graphs and replayed (the recorder checks the replayed launches again). Also the errors a user can hit
// before any kernel runs, and that nothing leaks.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, loadModel, Rng, type FloatDType, type Graph, type StepBatch } from '@zinfer/core';
import { memoryWeights, range, stepBatch, tinyLlama, TINY_LLAMA, type TinyLlamaConfig } from '@zinfer/core/testing';
import { attentionChunks, decodeAttentionFits, decodeCluster, decodeLanes, decodeSplits, decodeWide, setDecodeCluster, setDecodeSplits, type DecodeClusterMode, type DecodeSplitMode } from '../src/cuda/attention-launch.js';
import { planBuffers } from '../src/cuda/buffer-plan.js';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import { sideBySideWeights, type ActivationChoice } from '../src/cuda/device-weights.js';
import { planExecution } from '../src/cuda/exec-plan.js';
import { setL2Prefetch, type L2PrefetchMode } from '../src/cuda/l2-prefetch.js';
import { RecordingGpu, type RecordedLaunch } from '../src/cuda/recording-gpu.js';
import { setSampleClusterMode } from '../src/cuda/sample-launch.js';
import { isGraphableDecode, packStep, padDecodeBatch } from '../src/cuda/step-metadata.js';
import { normThreads, NORM_VECS, vectorGrid } from '../src/cuda/step-context.js';

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
const SETTINGS: CompileSettings = {
  activations: 'f32', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};

// ---------------------------------------------------------------------------------------------------
// Bytes each kernel touches through each pointer, from its other arguments and grid: a launch whose
// buffer is smaller would read or write out of bounds on the GPU. Element sizes come from the name's
// dtype suffixes (`_<weight>_<activation>` or `_<activation>`).

const BYTES: Record<string, number> = { f32: 4, f16: 2, bf16: 2 };
type Need = (a: readonly (bigint | number)[], l: RecordedLaunch, act: number, w: number) => Record<number, number>;
const n = (v: bigint | number) => Number(v);
const yBytes = (flag: bigint | number, act: number) => (n(flag) ? 4 : act);
const NEEDS: [RegExp, Need][] = [
  [/^rms_norm_/, (a, l, A) => ({ 0: l.grid.x * n(a[3]) * A, 1: l.grid.x * n(a[3]) * A, 2: n(a[3]) * 4 })],
  [/^layer_norm_/, (a, l, A) => ({ 0: l.grid.x * n(a[4]) * A, 1: l.grid.x * n(a[4]) * A, 2: n(a[4]) * 4, 3: n(a[4]) * 4 })],
  [/^add_/, (a, _l, A) => ({ 0: n(a[3]) * A, 1: n(a[3]) * A, 2: n(a[3]) * A })],
  [/^activation_/, (a, _l, A) => ({ 0: n(a[3]) * A, 1: n(a[3]) * A, 2: n(a[3]) * A })],
  [/^bias_add_/, (a, _l, A) => ({ 0: n(a[2]) * yBytes(a[4], A), 1: n(a[3]) * 4 })],
  [/^gather_rows_/, (a, l, A) => ({ 0: l.grid.x * n(a[3]) * A, 2: l.grid.x * 4 })],
  [/^to_f32_/, (a, _l, A) => ({ 0: n(a[2]) * 4, 1: n(a[2]) * A })],
  [/^rotary_/, (a, l, A) => ({ 0: l.grid.x * n(a[4]) * n(a[5]) * A, 1: l.grid.x * n(a[4]) * n(a[5]) * A, 2: l.grid.x * 4, 3: (n(a[6]) / 2) * 8 })],
  [/^rope_kv_/, (a, l, A) => {
    const [rows, heads, kvHeads, hd] = [l.grid.y, n(a[9]), n(a[10]), n(a[11])];
    assert.ok(l.grid.x === heads || l.grid.x === 1, 'rope_kv: a block per q head, or per row');
    return { 0: rows * heads * hd * A, 3: rows * heads * hd * A, 4: rows * kvHeads * hd * A, 5: rows * kvHeads * hd * A, 6: rows * 4, 7: rows * 4, 8: (n(a[12]) / 2) * 8 };
  }],
  [/^kv_write_/, (a, l, A) => ({ 2: l.grid.x * n(a[5]) * A, 3: l.grid.x * n(a[5]) * A, 4: l.grid.x * 4 })],
  [/^attn_decode/, (a, l, A) => {
    const [s, h, r, hd, kvh] = [l.grid.x, l.grid.y, l.grid.z, n(a[9]), n(a[10])];
    return {
      0: r * h * hd * A, 1: s > 1 ? r * h * s * (hd + 2) * 4 : 0, 2: s > 1 ? r * h * 4 : 0, 3: r * h * hd * A, 6: r * 4,
      15: r * kvh * hd * A, 16: r * kvh * hd * A, 17: r * 4, 18: (n(a[19]) / 2) * 8, 22: n(a[23]),
    };
  }],
  [/^attention_partial_/, (a, l, A) => ({ 0: l.grid.z * l.grid.y * l.grid.x * (n(a[7]) + 2) * 4, 1: l.grid.z * l.grid.y * n(a[7]) * A, 4: l.grid.z * 4 })],
  [/^attention_reduce_/, (a, l, A) => ({ 0: l.grid.y * l.grid.x * n(a[2]) * A, 1: l.grid.y * l.grid.x * n(a[3]) * (n(a[2]) + 2) * 4 })],
  [/^flash_prefill(\d+)_/, (a, l) => ({ 4: l.grid.x * 3 * 4 })],
  [/^embedding_sum_/, (a, l, A) => ({ 0: l.grid.x * n(a[9]) * A, 2: l.grid.x * 4, 6: l.grid.x * 4 })],
  [/^embedding_/, (a, l, A) => ({ 0: l.grid.x * n(a[3]) * A, 2: l.grid.x * 4 })],
  [/^gemm_/, (a, _l, A, W) => ({ 0: n(a[4]) * n(a[6]) * yBytes(a[7], A), 1: n(a[6]) * n(a[5]) * W, 2: n(a[4]) * n(a[5]) * A, 3: n(a[6]) * 4 })],
  [/^gemv\d[a-z]?_/, (a, _l, A, W) => {
    const [rows, inF, epi, yf] = [n(a[17]), n(a[18]), n(a[19]), a[22]];
    const seg = (j: number) => n(a[4 * j + 3]);
    const need: Record<number, number> = { 12: rows * inF * A, 13: rows * seg(0) * A, 14: inF * 4, 15: inF * 4, 23: n(a[24]) };
    for (let j = 0; j < 3; j++) {
      const nj = epi === 2 && j === 1 ? seg(0) : seg(j);
      Object.assign(need, { [4 * j]: rows * nj * yBytes(yf, A), [4 * j + 1]: nj * inF * W, [4 * j + 2]: nj * 4 });
    }
    return need;
  }],
  [/^argmax_f32$/, (a, l) => ({ 0: l.grid.x * 4, 1: l.grid.x * 4, 2: l.grid.x * n(a[3]) * 4, 4: l.grid.x * l.grid.y! * 4, 5: l.grid.x * l.grid.y! * 4, 6: l.grid.x * 4 })],
  // out, feed, logits, width, params (56 bytes a row), penalized ids (checked by runSample's test), scores f32,
  // weights f64; a cluster of blocks a row.
  [/^sample_f32$/, (a, l) => {
    const rows = l.grid.x / l.cluster;
    return { 0: rows * 4, 1: rows * 4, 2: rows * n(a[3]) * 4, 4: rows * 56, 6: rows * n(a[3]) * 4, 7: rows * n(a[3]) * 8 };
  }],
];

function dtypesOf(kernel: string): { act: number; w: number } {
  const m = /_(f32|f16|bf16)(?:_(f32|f16|bf16))?$/.exec(kernel);
  if (!m) return { act: 4, w: 4 };
  return m[2] ? { w: BYTES[m[1]], act: BYTES[m[2]] } : { w: BYTES[m[1]], act: BYTES[m[1]] };
}

function checkFootprints(gpu: RecordingGpu, from: number): void {
  for (const l of gpu.launches.slice(from)) {
    const need = NEEDS.find(([re]) => re.test(l.kernel));
    assert.ok(need, `no footprint for kernel ${l.kernel}`);
    const { act, w } = dtypesOf(l.kernel);
    for (const [i, bytes] of Object.entries(need[1](l.args, l, act, w))) {
      const ptr = l.args[Number(i)] as bigint;
      if (ptr === 0n || bytes === 0) continue;
      const room = gpu.extent(ptr);
      assert.ok(bytes <= room, `${l.kernel} argument ${i} needs ${bytes} bytes, its buffer has ${room}`);
    }
    if (/^gemv\d[a-z]?_/.test(l.kernel)) {
      const rows = n(l.args[17]);
      const R = Number(/^gemv(\d)/.exec(l.kernel)![1]);
      assert.ok(rows <= R && rows >= 1, `${l.kernel}: ${rows} rows`);
      const segs = [3, 7, 11].map((i) => n(l.args[i]));
      const wr = /^gemv\dm_/.test(l.kernel) ? 16 : /^gemv\de_/.test(l.kernel) ? 8 : 4; // weight rows a block: mma's 16, eight's 8, else 4 (gated: half gate, half up)
      const blocks = n(l.args[19]) === 2 ? Math.ceil(segs[0] / (wr / 2)) : segs.reduce((s, k) => s + Math.ceil(k / wr), 0);
      assert.is(l.grid.x, blocks, `${l.kernel}: the grid covers every output`);
    }
    if (l.kernel.startsWith('gemm_')) assert.ok(l.grid.x * 64 >= n(l.args[6]) && l.grid.y * 64 >= n(l.args[4]), `${l.kernel}: grid covers the output`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Buffer plan and fusion plan

/** Values that are live at once (counting the fused launches' reads) never share a slot. */
function checkPlan(graph: Graph): void {
  const plan = planExecution(graph);
  const { slotOf, slotRowBytes } = planBuffers(graph, plan.extraUses, () => 4, plan.earlyDefs);
  const def = new Map<number, number>();
  const last = new Map<number, number>();
  graph.nodes.forEach((node, i) => {
    def.set(node.output, i);
    last.set(node.output, Math.max(last.get(node.output) ?? i, i));
    for (const v of Object.values(node.inputs)) last.set(v, Math.max(last.get(v) ?? i, i));
  });
  for (const [v, i] of plan.extraUses) last.set(v, Math.max(last.get(v) ?? i, i));
  // Derived here, not from the plan's extraUses: a gather read in place is a read of its input wherever
  // its output is read (its own readers and the fused launches that read it).
  for (const [out, x] of plan.gatherAlias) last.set(x, Math.max(last.get(x) ?? 0, last.get(out) ?? 0));
  for (const [v, i] of plan.earlyDefs) def.set(v, Math.min(def.get(v) ?? i, i));
  last.set(graph.output, graph.nodes.length);
  const vals = [...def.keys()];
  for (const v of vals) assert.ok(slotOf[v] >= 0 && slotRowBytes[slotOf[v]] >= graph.values[v].width * 4, `value ${v} has a slot wide enough`);
  for (const a of vals) {
    for (const b of vals) {
      if (a >= b) continue;
      const overlap = def.get(a)! <= last.get(b)! && def.get(b)! <= last.get(a)!;
      if (overlap) assert.is.not(slotOf[a], slotOf[b], `values ${a} and ${b} are live together but share slot ${slotOf[a]}`);
    }
  }
}

test('buffer plan: live values (fused reads included) never share a buffer, tiny Llama and every fixture graph; reuse keeps buffers few', async () => {
  const { graph } = tinyLlama(Rng.fromSeed(1));
  checkPlan(graph);
  const fused = planExecution(graph);
  const plan = planBuffers(graph, fused.extraUses, () => 4, fused.earlyDefs);
  assert.ok(plan.slotRowBytes.length <= 9, `tiny Llama needs ${plan.slotRowBytes.length} buffers`);
  for (const arch of ARCHS) {
    const m = await loadModel(join(FIXTURES, arch));
    checkPlan(m.graph);
    m.weights.close();
  }
});

test('buffer plan: 16-bit values take half the bytes, the f32 output its 4', () => {
  const { graph } = tinyLlama(Rng.fromSeed(1));
  const plan = planBuffers(graph, [], (v) => (v === graph.output ? 4 : 2));
  const outSlot = plan.slotOf[graph.output];
  assert.ok(plan.slotRowBytes[outSlot] >= graph.values[graph.output].width * 4);
  const widest = Math.max(...graph.values.filter((v) => v.id !== graph.output).map((v) => v.width));
  assert.ok(plan.slotRowBytes.some((b) => b === widest * 2), 'a 16-bit slot sized at 2 bytes an element');
});

test('fusion plan of tiny Llama: norm + q|k|v, o + residual, norm + gate/up + SiLU, down + residual per layer; norm + LM head; rotary into the KV write', () => {
  const { graph } = tinyLlama(Rng.fromSeed(1));
  const plan = planExecution(graph);
  const kinds = plan.groups.map((g) => `${g.norm ? `${g.norm.op}+` : ''}${g.members.length}×linear+${g.epilogue.kind}`);
  const layer = ['rmsNorm+3×linear+none', '1×linear+residual', 'rmsNorm+2×linear+gated', '1×linear+residual'];
  assert.equal(kinds.sort(), [...layer, ...layer, 'rmsNorm+1×linear+none'].sort());
  assert.is(plan.rope.size, TINY_LLAMA.numLayers);
  for (const g of plan.groups) {
    const first = g.epilogue.kind === 'none' ? Math.min(...g.covers.filter((i) => graph.nodes[i].op === 'linear')) : Math.max(...g.covers);
    assert.is(g.at, first, 'a plain group launches where its first linear runs, others at their epilogue node');
  }
  const covered = new Set(plan.groups.flatMap((g) => g.covers));
  assert.is(covered.size, plan.groups.reduce((s, g) => s + g.covers.length, 0), 'no node in two groups');
  // No fusion asked: every linear alone, no norms or epilogues, no rotary fusion.
  const none = planExecution(graph, { linear: false, rope: false });
  assert.ok(none.groups.every((g) => g.members.length === 1 && g.norm === null && g.epilogue.kind === 'none'));
  assert.is(none.rope.size, 0);
});

test('fusion plan of the fixture models: LayerNorm and GELU/ReLU epilogues (gpt2, opt, gpt-neox), q/k norm keeps rotary separate only where it must', async () => {
  const expect: Record<string, (kinds: string[]) => void> = {
    gpt2: (k) => assert.ok(k.includes('layerNorm+3×linear+none') && k.includes('layerNorm+1×linear+act') && k.includes('1×linear+residual')),
    opt: (k) => assert.ok(k.includes('layerNorm+3×linear+none') && k.includes('layerNorm+1×linear+act')),
    'gpt-neox': (k) => assert.ok(k.includes('layerNorm+3×linear+none') && k.includes('layerNorm+1×linear+act') && k.includes('1×linear+residual')),
    llama2: (k) => assert.ok(k.includes('rmsNorm+3×linear+none') && k.includes('rmsNorm+2×linear+gated')),
  };
  for (const arch of ARCHS) {
    const m = await loadModel(join(FIXTURES, arch));
    const plan = planExecution(m.graph);
    const kinds = plan.groups.map((g) => `${g.norm ? `${g.norm.op}+` : ''}${g.members.length}×linear+${g.epilogue.kind}`);
    expect[arch]?.(kinds);
    const rotary = m.graph.nodes.filter((x) => x.op === 'rotary').length;
    assert.is(plan.ropeCovers.size, rotary, `${arch}: every rotary node fused into its attention's KV write`);
    m.weights.close();
  }
});

test('runSample: a cluster of sample_f32 blocks a selected row, each row\'s packed params and penalized ids uploaded, bad rows refused before the step', async () => {
  const gpu = new RecordingGpu({ keepUploads: true });
  const m = tinyLlama(Rng.fromSeed(9), TINY16, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 12, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', graphs: false });
  const vocab = m.graph.values[m.graph.output].width;
  const row = (uniform: number, penalized: number[], topK = 0) => ({ temperature: 0.8, topK, topP: 0.9, minP: 0.05, repetitionPenalty: penalized.length ? 1.2 : 1, uniform, penalized: Int32Array.from(penalized) });
  for (const [rows, mode, cluster] of [[3, 'auto', 1], [1, '4', 4], [2, '8', 8]] as const) {
    setSampleClusterMode(mode); // the tiny vocab is one block's work: force clusters to check their shape
    const batch = stepBatch(range(rows).map((i) => ({ tokens: [i + 1, i + 2], cached: 0, blocks: [3 * i] })), 4, 'last');
    const from = gpu.launches.length;
    const sample = range(rows).map((i) => row(i / 4, i === 1 ? [5, 7] : [], i === 2 ? vocab + 1 : 3));
    const ids = await program.runSample(batch, sample).finally(() => setSampleClusterMode('auto'));
    assert.is(ids.length, rows);
    const l = gpu.launches.slice(from).find((x) => x.kernel === 'sample_f32')!;
    assert.ok(l, 'sample_f32 launched');
    assert.equal([l.grid.x, l.block, l.cluster], [rows * cluster, 1024, cluster]);
    assert.is(n(l.args[3]), vocab);
    const packed = gpu.uploads.get(l.args[4] as bigint)!;
    assert.is(l.args[5], (l.args[4] as bigint) + BigInt(rows * 56), 'penalized ids follow the rows');
    const params = new DataView(packed.buffer);
    sample.forEach((r, i) => {
      assert.equal([0, 8, 16, 24, 32].map((o) => params.getFloat64(i * 56 + o, true)), [r.temperature, r.topP, r.minP, r.repetitionPenalty, r.uniform]);
      assert.is(params.getInt32(i * 56 + 40, true), i === 2 ? 0 : 3, 'top-k above the vocab is off');
    });
    if (rows > 1) {
      const penStart = params.getInt32(56 + 44, true);
      assert.is(params.getInt32(56 + 48, true), 2);
      assert.equal([...new Int32Array(packed.buffer, rows * 56 + penStart * 4, 2)], [5, 7]);
    }
    checkFootprints(gpu, from);
  }
  const batch = stepBatch([{ tokens: [1], cached: 0, blocks: [0] }], 4, 'last');
  const before = gpu.launches.length;
  await rejects(() => program.runSample(batch, [row(0.5, [vocab])]), 'row 0', 'penalized');
  await rejects(() => program.runSample(batch, [row(1, [])]), 'row 0', 'uniform');
  await rejects(() => program.runSample(batch, []), '0 sample rows', '1 selected');
  assert.is(gpu.launches.length, before, 'nothing launched for a refused call');
  await program.dispose();
});

test('runArgmax across steps of different sizes: the row counters stay at one address, never inside another call\'s ids or partials', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(8), TINY16, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 12, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', graphs: false });
  const regions: [bigint, bigint][] = [];
  const counters = new Set<bigint>();
  for (const rows of [3, 1, 2, 3]) {
    await program.runArgmax(stepBatch(range(rows).map((i) => ({ tokens: [i + 1, i + 2], cached: 0, blocks: [3 * i] })), 4, 'last'));
    const l = gpu.launches.filter((x) => x.kernel === 'argmax_f32').at(-1)!;
    const [out, feed, , , pv, pi, cnt] = l.args as bigint[];
    assert.is(feed, 0n, 'no feed outside a chain');
    assert.is(l.grid.x, rows);
    regions.push([out, pi + BigInt(l.grid.x * l.grid.y! * 4)]);
    assert.ok(pv > out && pi > pv, 'ids, then partial values, then partial ids');
    counters.add(cnt);
  }
  assert.is(counters.size, 1, 'one counters buffer');
  const [cnt] = [...counters];
  for (const [lo, hi] of regions) assert.ok(cnt < lo || cnt >= hi, 'counters outside every call\'s ids and partials');
  await program.dispose();
  assert.is(gpu.live.size, 0);
});

test('GPT-2: token + position embeddings summed in one launch; the final row gather skipped when every row is selected in order', async () => {
  const m = await loadModel(join(FIXTURES, 'gpt2'));
  const plan = planExecution(m.graph);
  assert.is(plan.embeddingSums.size, 1);
  assert.is(plan.embeddingCovers.size, 2);
  assert.is(plan.gatherAlias.size, 1);
  checkPlan(m.graph);
  assert.is(planExecution(m.graph, { linear: false, rope: false }).embeddingSums.size, 0, 'fusion off: three launches');
  const gpu = new RecordingGpu();
  const program = await compileProgram(gpu, m.graph, m.weights, { kvCache: { numBlocks: 8, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', graphs: false });
  const kernels = async (batch: StepBatch) => {
    const from = gpu.launches.length;
    await program.run(batch);
    checkFootprints(gpu, from);
    return gpu.launches.slice(from).map((l) => l.kernel);
  };
  const prompt = await kernels(stepBatch([{ tokens: [3, 1, 4, 1, 5], cached: 0, blocks: [0, 1] }], 4, 'last'));
  assert.ok(prompt[0].startsWith('embedding_sum_'), `first launch ${prompt[0]}`);
  assert.not.ok(prompt.some((k) => /^(embedding|add)_(f32|f16|bf16)/.test(k)), 'no separate lookups or sum');
  assert.is(prompt.filter((k) => k.startsWith('gather_rows_')).length, 1, 'the last row gathered');
  const decode = await kernels(stepBatch([{ tokens: [9], cached: 5, blocks: [0, 1] }], 4, 'last'));
  assert.not.ok(decode.some((k) => k.startsWith('gather_rows_')), 'a decode step reads the last hidden state in place');
  const all = await kernels(stepBatch([{ tokens: [2, 6], cached: 6, blocks: [0, 1] }], 4, 'all'));
  assert.not.ok(all.some((k) => k.startsWith('gather_rows_')), 'every row selected: no gather');
  const two = stepBatch([{ tokens: [4], cached: 7, blocks: [0, 1] }, { tokens: [7], cached: 3, blocks: [4] }], 4, 'last');
  const swapped = await kernels({ ...two, selectedRows: Int32Array.from([1, 0]) });
  assert.is(swapped.filter((k) => k.startsWith('gather_rows_')).length, 1, 'every row, another order: gathered');
  await program.dispose();
  m.weights.close();
});

// ---------------------------------------------------------------------------------------------------
// Step metadata, decode padding and attention splits

test('packStep lays out ids, positions, slots, selection, row→sequence, sequence info, prompt tiles and block tables', () => {
  const batch = stepBatch([{ tokens: [5, 6, 7], cached: 2, blocks: [3, 1] }, { tokens: [9], cached: 0, blocks: [0] }], 4, 'last');
  const m = packStep(batch, 4);
  const part = (at: number, len: number) => [...m.ints.subarray(at, at + len)];
  assert.equal(part(m.at.tokenIds, 4), [5, 6, 7, 9]);
  assert.equal(part(m.at.positions, 4), [2, 3, 4, 0]);
  assert.equal(part(m.at.slots, 4), [14, 15, 4, 0]);
  assert.equal(part(m.at.selected, 2), [2, 3]);
  assert.equal(part(m.at.rowSeq, 4), [0, 0, 0, 1]);
  assert.equal(part(m.at.seqInfo, 8), [0, 3, 5, 0, 3, 1, 1, 2]);
  assert.is(m.tiles, 2);
  assert.equal(part(m.at.tiles, 6), [0, 0, 3, 1, 3, 1], 'the tile reaching the latest position first');
  assert.equal(part(m.at.blockTables, 3), [3, 1, 0]);
  assert.equal([...m.rowPositions], [2, 3, 4, 0]);
  assert.is(m.ints.length, m.at.blockTables + 3);
  assert.not.ok(m.decodeOnly);
  const long = packStep(stepBatch([{ tokens: range(150), cached: 0, blocks: range(10) }], 16, 'last'), 16);
  assert.equal([...long.ints.subarray(long.at.tiles, long.at.tiles + 9)], [0, 128, 22, 0, 64, 64, 0, 0, 64]);
});

test('decode steps: graphable when one selected row per sequence in order; padding to a bucket keeps the layout and parks extra rows in the scratch block', () => {
  const decode = stepBatch([{ tokens: [5], cached: 6, blocks: [2, 0] }, { tokens: [7], cached: 2, blocks: [1] }, { tokens: [1], cached: 9, blocks: [3, 4, 5] }], 4, 'last');
  assert.ok(isGraphableDecode(decode));
  assert.ok(packStep(decode, 4).decodeOnly);
  assert.not.ok(isGraphableDecode(stepBatch([{ tokens: [5, 6], cached: 0, blocks: [0] }], 4, 'last')));
  assert.not.ok(isGraphableDecode({ ...decode, selectedRows: Int32Array.of(0, 1) }));
  const padded = padDecodeBatch(decode, 4, 9, 4);
  assert.equal([...padded.tokenIds], [5, 7, 1, 0]);
  assert.equal([...padded.slots], [...decode.slots, 36]);
  assert.equal([...padded.selectedRows], [0, 1, 2, 3]);
  assert.equal(padded.sequences[3], { queryStart: 3, queryLength: 1, contextLength: 1, blockTable: Int32Array.of(9) });
  const [a, b] = [packStep(padded, 4), packStep(padDecodeBatch(stepBatch([{ tokens: [5], cached: 0, blocks: [2] }], 4), 4, 9, 4), 4)];
  assert.equal(a.at, { ...b.at, blockTables: a.at.blockTables }, 'the same offsets for every step of the bucket');
  assert.is(a.at.blockTables, b.at.blockTables);
});

test('attention: chunks of the general path, decode splits fixed per batch size, decode lanes per head size', () => {
  assert.equal(attentionChunks(Int32Array.of(0), null, null), { chunk: 4, chunks: 1 });
  assert.equal(attentionChunks(Int32Array.of(3, 11), null, null), { chunk: 4, chunks: 3 });
  assert.equal(attentionChunks(Int32Array.of(4095), null, null), { chunk: 256, chunks: 16 });
  assert.equal(attentionChunks(Int32Array.of(4095), 100, null), { chunk: 7, chunks: 15 });
  assert.equal(attentionChunks(Int32Array.of(9), null, 2), { chunk: 2, chunks: 5 });
  assert.equal(decodeSplits(1, 32, 132, null), { splits: 9, minChunk: 32 });
  assert.equal(decodeSplits(64, 32, 132, null), { splits: 1, minChunk: 32 });
  assert.equal(decodeSplits(64, 32, 132, 1), { splits: 32, minChunk: 1 });
  setDecodeSplits('4'); // the A/B switch (ZINFER_DECODE_SPLITS): a fixed count at any batch
  try {
    assert.equal(decodeSplits(1, 32, 132, null), { splits: 4, minChunk: 32 });
    assert.equal(decodeSplits(64, 32, 132, null), { splits: 4, minChunk: 32 });
    assert.throws(() => setDecodeSplits('3' as DecodeSplitMode), (e: unknown) => e instanceof BackendError && /ZINFER_DECODE_SPLITS/.test(String(e)));
  } finally {
    setDecodeSplits('auto');
  }
  assert.equal(decodeSplits(1, 32, 132, null), { splits: 9, minChunk: 32 });
  // Clusters of the splits: all of them when they fit the limit; else a multiple of the limit (≤ 32) in clusters of it.
  assert.equal([1, 2, 5, 8].map((s) => decodeCluster(s, 8, 'auto')), [{ splits: 1, cluster: 1 }, { splits: 2, cluster: 2 }, { splits: 5, cluster: 5 }, { splits: 8, cluster: 8 }]);
  assert.equal([9, 12, 14, 17, 27, 32].map((s) => decodeCluster(s, 8, 'auto').splits), [8, 16, 16, 16, 24, 32]);
  assert.ok([9, 27, 32].every((s) => decodeCluster(s, 8, 'auto').cluster === 8));
  assert.equal(decodeCluster(9, 8, 'off'), { splits: 9, cluster: 1 });
  assert.equal(decodeCluster(9, 1, 'auto'), { splits: 9, cluster: 1 }, 'a GPU without clusters');
  assert.equal(decodeCluster(9, 8, '4'), { splits: 8, cluster: 4 }, 'a lower cap');
  assert.equal(decodeCluster(3, 8, '4'), { splits: 3, cluster: 3 });
  assert.throws(() => setDecodeCluster('on' as DecodeClusterMode), (e: unknown) => e instanceof BackendError && /ZINFER_DECODE_CLUSTER/.test(String(e)));
  // 8 cached elements a lane of an f16/bf16 cache, 16 wide and of fp8 (heads a multiple of 16), 4 in f32.
  const heads = [128, 64, 16, 8, 24, 80, 256, 3, 512];
  assert.equal(heads.map((d) => decodeLanes(d, 'f16', false)), [16, 8, 2, 1, 4, 16, 32, 0, 0]);
  assert.equal(heads.map((d) => decodeLanes(d, 'f16', false, true)), [8, 4, 1, 1, 2, 8, 16, 0, 0]);
  assert.equal(heads.map((d) => decodeLanes(d, 'bf16', true)), [8, 4, 1, 0, 0, 8, 16, 0, 0]);
  assert.equal([128, 8, 4, 130].map((d) => decodeLanes(d, 'f32', false)), [32, 2, 1, 0]);
  assert.equal([128, 8, 4, 130].map((d) => decodeLanes(d, 'f32', true)), [32, 2, 1, 0]);
  // Wide from 16 rows of a 16-bit cache, pipelined variants only (auto is pipelined there).
  assert.equal([decodeWide(15, 'f16', false, 'pipe'), decodeWide(16, 'f16', false, 'pipe'), decodeWide(64, 'bf16', false, 'v1'), decodeWide(64, 'f16', true, 'pipe'), decodeWide(64, 'f32', false, 'pipe')], [false, true, false, false, false]);
  assert.equal([decodeWide(16, 'f16', false, 'auto'), decodeWide(64, 'f16', true, 'auto')], [true, false]);
});

// ---------------------------------------------------------------------------------------------------
// Whole programs on the recording GPU

const prefillThenDecode = (): StepBatch[] => [
  stepBatch([{ tokens: range(7, 1), cached: 0, blocks: [0, 1] }, { tokens: range(5, 10), cached: 0, blocks: [3, 2] }], 4, 'all'),
  stepBatch([{ tokens: [3], cached: 7, blocks: [0, 1] }, { tokens: [4, 5], cached: 5, blocks: [3, 2] }], 4, 'last'),
  stepBatch([{ tokens: [8], cached: 8, blocks: [0, 1, 4] }], 4, 'last'),
];

const TINY16: TinyLlamaConfig = { ...TINY_LLAMA, headDim: 16 }; // a head size the flash kernel is compiled for

test('L2 prefetch (attention, all): decode launches name the next GEMV\'s weight, within its bytes; off: none', async () => {
  const m = tinyLlama(Rng.fromSeed(2), TINY16, 'f16');
  const sites = (mode: L2PrefetchMode) => async () => {
    setL2Prefetch(mode);
    try {
      const gpu = new RecordingGpu({ cublas: true });
      const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 5, blockSize: 4 } }, { ...SETTINGS, activations: 'auto' });
      let from = 0;
      for (const batch of prefillThenDecode()) {
        from = gpu.launches.length;
        await program.run(batch);
        checkFootprints(gpu, from); // the prefetched range is a read of the weight: within its allocation
      }
      const last = gpu.launches.slice(from); // the decode step
      await program.dispose();
      return {
        attention: last.filter((l) => /^attn_decode/.test(l.kernel) && n(l.args[23]) > 0).length,
        gemv: last.filter((l) => /^gemv\d/.test(l.kernel) && n(l.args[25]) > 0).length,
      };
    } finally {
      setL2Prefetch('off');
    }
  };
  assert.equal(await sites('off')(), { attention: 0, gemv: 0 });
  const attention = await sites('attention')();
  assert.ok(attention.attention === TINY16.numLayers && attention.gemv === 0, JSON.stringify(attention));
  const all = await sites('all')();
  assert.ok(all.attention === TINY16.numLayers && all.gemv >= 3 * TINY16.numLayers, JSON.stringify(all)); // every group but the LM head
});

for (const dtype of ['f32', 'f16', 'bf16'] as FloatDType[]) {
  for (const activations of ['f32', 'auto'] as ActivationChoice[]) {
    for (const cublas of [true, false]) {
      const half = activations === 'auto' && dtype !== 'f32';
      test(`tiny Llama (${dtype} weights, activations ${activations}, cuBLAS ${cublas ? 'on' : 'off'}): every launch fits its kernel and its buffers; nothing leaks`, async () => {
        const gpu = new RecordingGpu({ cublas });
        const m = tinyLlama(Rng.fromSeed(2), TINY16, dtype);
        const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 5, blockSize: 4 } }, { ...SETTINGS, activations, cublas });
        const act = half ? dtype : 'f32';
        assert.is(program.activations, act);
        for (const batch of prefillThenDecode()) {
          const from = gpu.launches.length;
          const out = await program.run(batch);
          assert.is(out.length, batch.selectedRows.length * TINY_LLAMA.vocabSize);
          checkFootprints(gpu, from);
          if (batch.sequences.every((s) => s.queryLength === 1)) {
            // A decode step: the attention rotates q and k and writes the cache itself.
            assert.not.ok(gpu.launches.slice(from).some((l) => /^(rope_kv|kv_write|rotary)_/.test(l.kernel)), 'decode: rotary and the KV write are in the attention');
            // Its splits in thread-block clusters (the recording GPU takes 8): merged in shared memory.
            for (const l of gpu.launches.slice(from).filter((l) => /^attn_decode/.test(l.kernel))) {
              assert.is(l.cluster, l.grid.x > 1 ? Math.min(l.grid.x, 8) : 1, `${l.kernel}: ${l.grid.x} splits in clusters of ${l.cluster}`);
            }
          }
        }
        const kernels = new Set(gpu.launches.map((l) => l.kernel));
        const w = half ? act : dtype;
        const lanes = decodeLanes(16, act, false);
        const decode = `attn_decode${lanes}${act === 'f32' ? '' : 'p'}_${act}`; // the pipelined variant in 16-bit modes (the default)
        const narrow = half ? 'w' : ''; // hidden 32: narrow rows take the one-warp GEMV in 16-bit modes
        // Over 8 rows on cuBLAS, each residual add is the C matrix of its projection's GEMM: no add kernel.
        const residualInGemm = cublas && w === act;
        const add = residualInGemm ? [] : [`add_${act}`];
        for (const k of [`embedding_${w}_${act}`, `gemv1${narrow}_${w}_${act}`, `gemv2${narrow}_${w}_${act}`, `rms_norm_${act}`, `rope_kv_${act}`, decode, ...add, `activation_${act}`, `gather_rows_${act}`]) {
          assert.ok(kernels.has(k), `launched ${k}; launched: ${[...kernels].join(' ')}`);
        }
        assert.not.ok(kernels.has(`rotary_${act}`), 'rotary fused into the KV write');
        assert.not.ok(kernels.has(`to_f32_${act}`), 'the LM head writes f32 logits itself');
        // 12 prompt rows: more than 8, so the many-row path runs (cuBLAS when weights match the activations).
        if (residualInGemm) {
          assert.ok(gpu.gemms.length > 0 && gpu.gemms.every((g) => g.dtype === act) && !kernels.has(`gemm_${w}_${act}`));
          // o and down of both layers in each 12-row prompt step add their residual; the rest add nothing.
          assert.ok(gpu.gemms.some((g) => g.c !== undefined) && gpu.gemms.some((g) => g.c === undefined));
          assert.not.ok(kernels.has(`add_${act}`), 'no add kernel: the residual adds are in the GEMMs');
        }
        else assert.ok(kernels.has(`gemm_${w}_${act}`) && gpu.gemms.length === 0);
        if (half) assert.ok(kernels.has(`flash_prefill16_${act}`) && !kernels.has(`attention_partial_${act}`), 'prompt attention on tensor cores');
        else assert.ok(kernels.has('attention_partial_f32'));
        if (half) assert.ok(gpu.gemms.every((g) => g.yDtype === act || g.yDtype === 'f32'));
        await program.dispose();
        assert.is(gpu.live.size, 0, `${gpu.live.size} allocations leaked`);
      });
    }
  }
}

test('norms of whole 16-byte vectors launch NORM_VECS vectors a thread (others up to 1,024 for the scalar loop); add and the activations a thread per vector', () => {
  assert.is(NORM_VECS, 4);
  assert.is(normThreads(4096, 'f16'), 128, 'a 7B row: 512 vectors, 4 a thread');
  assert.is(normThreads(4096, 'f32'), 256);
  assert.is(normThreads(8192, 'bf16'), 256);
  assert.is(normThreads(128, 'bf16'), 32, 'a q/k norm head: one warp');
  assert.is(normThreads(4100, 'f16'), 1024, 'not whole vectors: the scalar loop');
  assert.is(normThreads(67, 'f32'), 96);
  assert.equal(vectorGrid(64 * 11008, 'f16'), { x: 344 }, '88,064 vectors');
  assert.equal(vectorGrid(4096, 'f32'), { x: 4 });
  assert.equal(vectorGrid(1001, 'f16'), { x: 4 }, 'not whole vectors: a thread per element');
});

test('decode steps replay CUDA graphs per batch-size bucket: first step eager, second captured, then replayed; growth recaptures; dispose destroys them', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(3), TINY16, 'bf16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 12, blockSize: 4 } }, { ...SETTINGS, activations: 'auto' });
  const seqs = [{ blocks: [0, 1, 2] }, { blocks: [3, 4, 5] }, { blocks: [6, 7, 8] }];
  await program.run(stepBatch(seqs.map((s, i) => ({ tokens: range(3, i + 1), cached: 0, blocks: s.blocks })), 4, 'last'));
  const decode = (t: number, count: number) => stepBatch(seqs.slice(0, count).map((s, i) => ({ tokens: [i + t], cached: 3 + t, blocks: s.blocks })), 4, 'last');
  const before = { ...program.stats };
  for (let t = 0; t < 4; t++) {
    const from = gpu.launches.length;
    const out = await program.run(decode(t, 3)); // 3 rows: bucket 4
    assert.is(out.length, 3 * TINY_LLAMA.vocabSize);
    checkFootprints(gpu, from);
    const replayed = gpu.launches.slice(from).every((l) => l.replay);
    assert.is(replayed, t >= 1, `step ${t}: ${t >= 1 ? 'replayed' : 'eager'}`);
    if (t >= 1) assert.ok(gpu.launches.slice(from).every((l) => l.kernel === 'argmax_f32' || !/gemv\d[a-z]?_/.test(l.kernel) || n(l.args[17]) === 4), 'padded to 4 rows');
  }
  assert.is(program.stats.graphCaptures - before.graphCaptures, 1);
  assert.is(program.stats.graphReplays - before.graphReplays, 3);
  assert.is(program.stats.graphError, null);
  await program.run(decode(4, 1)); // bucket 1: a new graph, eager first
  await program.run(decode(5, 1));
  assert.is(gpu.graphStats.live, 2);
  // A larger prompt step grows the buffers: the graphs' addresses are stale, so the next decode steps warm up and capture again.
  await program.run(stepBatch([{ tokens: range(20, 1), cached: 0, blocks: [9, 10, 11, 0, 1] }], 4, 'all'));
  const captures = program.stats.graphCaptures;
  await program.run(decode(6, 3));
  await program.run(decode(7, 3));
  assert.is(program.stats.graphCaptures, captures + 1);
  const ids = await program.runArgmax(decode(8, 3));
  assert.is(ids.length, 3);
  assert.is(gpu.launches[gpu.launches.length - 1].kernel, 'argmax_f32');
  await program.dispose();
  assert.is(gpu.graphStats.live, 0, 'every graph destroyed');
  assert.is(gpu.live.size, 0);
});

test('runArgmaxSteps and runSampleSteps: graphed decode feeds each step\'s pick into the next step\'s token ids on the GPU, with one download; eager decode chains on the host', async () => {
  const sampleRow = (uniform: number) => ({ temperature: 0.7, topK: 5, topP: 0.9, minP: 0, repetitionPenalty: 1, uniform, penalized: new Int32Array(0) });
  for (const [graphs, kind] of [[true, 'argmax'], [false, 'argmax'], [true, 'sample'], [false, 'sample']] as const) {
    const gpu = new RecordingGpu();
    const m = tinyLlama(Rng.fromSeed(5), TINY16, 'bf16');
    const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 12, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', graphs });
    const seqs = [{ blocks: [0, 1, 2] }, { blocks: [3, 4, 5] }, { blocks: [6, 7, 8] }];
    await program.run(stepBatch(seqs.map((s, i) => ({ tokens: range(3, i + 1), cached: 0, blocks: s.blocks })), 4, 'last'));
    let downloads = 0;
    const download = gpu.download.bind(gpu);
    gpu.download = (dst, src) => {
      downloads++;
      download(dst, src);
    };
    const uploads: { at: bigint; ints: Int32Array }[] = [];
    const upload = gpu.upload.bind(gpu);
    gpu.upload = (dst, src) => {
      uploads.push({ at: dst, ints: new Int32Array(src.buffer.slice(src.byteOffset, src.byteOffset + src.byteLength)) });
      upload(dst, src);
    };
    const from = gpu.launches.length;
    const first = stepBatch(seqs.map((s, i) => ({ tokens: [i + 9], cached: 3, blocks: s.blocks })), 4, 'last');
    const ids = kind === 'argmax' ? await program.runArgmaxSteps(first, 5) : await program.runSampleSteps(first, range(5).map((j) => range(3).map((i) => sampleRow((j + i) / 16))));
    assert.is(ids.length, 15);
    checkFootprints(gpu, from);
    const argmax = gpu.launches.slice(from).filter((l) => l.kernel === `${kind}_f32`);
    assert.is(argmax.length, 5);
    if (kind === 'sample') {
      // Each step uploads its own rows (56 bytes each), the draws of that step.
      const params = uploads.filter((u) => u.at === argmax[0].args[4]).map((u) => new DataView(u.ints.buffer).getFloat64(32, true));
      assert.equal(params, range(5).map((j) => j / 16), 'step j draws its own uniforms');
    }
    const feeds = argmax.map((l) => l.args[1] as bigint);
    if (!graphs) {
      assert.is(downloads, 5, 'a host chain: each step\'s ids come back before the next step');
      assert.ok(feeds.every((f) => f === 0n));
    } else {
      assert.is(downloads, 1, 'every step\'s ids in one download');
      const meta = feeds[0];
      assert.ok(meta !== 0n && feeds.slice(0, 4).every((f) => f === meta) && feeds[4] === 0n, 'steps 1–4 read the ids the step before wrote');
      const outs = argmax.map((l) => l.args[0] as bigint);
      outs.forEach((o, j) => assert.is(o, outs[0] + BigInt(j * 12), `step ${j}'s ids after step ${j - 1}'s`));
      // The first step uploads its whole metadata; the fed ones all but the 4 (padded) token ids: positions 3 + j first.
      const metaUploads = uploads.filter((u) => u.at === meta || u.at === meta + 16n);
      assert.equal(metaUploads.map((u) => u.at), [meta, meta + 16n, meta + 16n, meta + 16n, meta + 16n]);
      metaUploads.slice(1).forEach((u, j) => assert.equal([...u.ints.subarray(0, 4)], [4 + j, 4 + j, 4 + j, 0], `positions of step ${j + 1}`));
      assert.is(program.stats.graphCaptures, 1);
      assert.is(program.stats.graphReplays, 4, 'warmed up, captured, replayed');
    }
    await program.dispose();
    assert.is(gpu.live.size, 0);
  }
});

test('runWithoutOutput: the step runs (graphed like run(), KV cache written) and is waited for, but nothing is copied to the host', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(4), TINY16, 'bf16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 12, blockSize: 4 } }, { ...SETTINGS, activations: 'auto' });
  const seqs = [{ blocks: [0, 1] }, { blocks: [2, 3] }];
  let downloads = 0;
  let syncs = 0;
  const download = gpu.download.bind(gpu);
  const synchronize = gpu.synchronize.bind(gpu);
  gpu.download = (dst, src) => (downloads++, download(dst, src));
  gpu.synchronize = () => (syncs++, synchronize());
  await program.runWithoutOutput(stepBatch(seqs.map((s, i) => ({ tokens: range(3, i + 1), cached: 0, blocks: s.blocks })), 4, 'last'));
  const decode = (t: number) => stepBatch(seqs.map((s, i) => ({ tokens: [i + t], cached: 3 + t, blocks: s.blocks })), 4, 'last');
  for (let t = 0; t < 3; t++) {
    const from = gpu.launches.length;
    await program.runWithoutOutput(decode(t));
    assert.ok(gpu.launches.slice(from).some((l) => /^attn_decode/.test(l.kernel)), `step ${t}: the attention (and its KV write) ran`);
    checkFootprints(gpu, from);
  }
  assert.is(downloads, 0, 'no output copied');
  assert.is(syncs, 4, 'each step waited for');
  assert.is(program.stats.graphReplays, 2, 'decode steps take their graph as run() does (eager, then captured and replayed)');
  const out = await program.run(decode(3));
  assert.is(out.length, 2 * TINY_LLAMA.vocabSize);
  assert.is(downloads, 1);
  await program.dispose();
  assert.is(gpu.live.size, 0);
});

test('a head size the decode kernel does not take (fp8 heads of 8 in a 16-bit mode): decode steps run the general attention eagerly, never a stale graph', async () => {
  const cfg: TinyLlamaConfig = { ...TINY16, headDim: 8 };
  const m = tinyLlama(Rng.fromSeed(5), cfg, 'f16');
  assert.ok(decodeAttentionFits(m.graph, 'f16', false));
  assert.not.ok(decodeAttentionFits(m.graph, 'f16', true));
  assert.ok(decodeAttentionFits(m.graph, 'f32', true));
  const gpu = new RecordingGpu();
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 12, blockSize: 4, dtype: 'fp8' } }, { ...SETTINGS, activations: 'auto' });
  const seqs = [{ blocks: [0, 1, 2] }, { blocks: [3, 4, 5] }];
  await program.run(stepBatch(seqs.map((s, i) => ({ tokens: range(3, i + 1), cached: 0, blocks: s.blocks })), 4, 'last'));
  for (let t = 0; t < 4; t++) {
    const from = gpu.launches.length;
    await program.run(stepBatch(seqs.map((s, i) => ({ tokens: [i + t], cached: 3 + t, blocks: s.blocks })), 4, 'last'));
    const kernels = gpu.launches.slice(from).map((l) => l.kernel);
    assert.ok(kernels.includes('attention_partial_f16_e4m3') && !kernels.some((k) => k.startsWith('attn_decode')), kernels.join(' '));
    assert.not.ok(gpu.launches.slice(from).some((l) => l.replay));
  }
  assert.is(program.stats.graphCaptures, 0);
  assert.is(program.stats.graphReplays, 0);
  await program.dispose();
});

test('decode buckets over 8 rows (cuBLAS inside the graph) and a failed capture: that bucket runs eagerly, the others keep their graphs', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(6), TINY16, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 40, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', maxGraphRows: 64 });
  const decode = (rows: number, t: number) => stepBatch(range(rows).map((i) => ({ tokens: [(i + t) % 50], cached: t, blocks: [2 * i, 2 * i + 1] })), 4, 'last');
  for (let t = 0; t < 3; t++) {
    const from = gpu.launches.length;
    const gemms = gpu.gemms.length;
    await program.run(decode(12, t)); // bucket 16: GEMMs of 16 rows, in the graph from the second step
    checkFootprints(gpu, from);
    assert.ok(gpu.gemms.slice(gemms).every((g) => g.rows === 16), '12 rows padded to 16');
  }
  assert.is(program.stats.graphCaptures, 1);
  gpu.failCaptures = true;
  for (let t = 0; t < 3; t++) await program.run(decode(1, t)); // bucket 1: eager, capture fails, eager
  assert.match(program.stats.graphError ?? '', 'CAPTURE_INVALIDATED');
  gpu.failCaptures = false;
  const replays = program.stats.graphReplays;
  await program.run(decode(1, 3));
  assert.is(program.stats.graphReplays, replays, 'the failed bucket stays eager');
  await program.run(decode(12, 3));
  assert.is(program.stats.graphReplays, replays + 1, 'the 16-row bucket still replays');
  await program.dispose();
  assert.is(gpu.live.size, 0);
  assert.is(gpu.graphStats.live, 0);
});

test('linears on one input with one weight shape upload side by side and, over 9–64 rows, run as one strided-batched GEMM whose outputs lie [member][rows][width]', async () => {
  for (const [label, cfg, batches] of [
    ['MHA (q, k, v alike)', { ...TINY16, numKeyValueHeads: TINY16.numHeads }, [3, 2]],
    ['GQA (k, v alike)', TINY16, [2, 2]],
  ] as const) {
    const m = tinyLlama(Rng.fromSeed(7), cfg, 'f16');
    const groups = sideBySideWeights(m.graph);
    assert.equal(groups.map((g) => g.length), Array.from({ length: cfg.numLayers }, () => batches).flat(), label);
    const gpu = new RecordingGpu();
    const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 80, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', maxGraphRows: 64 });
    for (const rows of [3, 12, 64, 70]) {
      const from = gpu.launches.length;
      const gemms = gpu.gemms.length;
      await program.run(stepBatch(range(rows).map((i) => ({ tokens: [i % 50], cached: 0, blocks: [i] })), 4, 'last'));
      checkFootprints(gpu, from);
      const batched = gpu.gemms.slice(gemms).filter((g) => g.batch).map((g) => g.batch!.count);
      if (rows >= 9 && rows <= 64) {
        assert.equal(batched, Array.from({ length: cfg.numLayers }, () => batches).flat(), `${label}, ${rows} rows`);
        for (const g of gpu.gemms.slice(gemms)) if (g.batch) assert.is(g.batch.strideY, g.rows * g.outF, 'outputs one after another (rows of the padded decode bucket)');
      } else {
        assert.equal(batched, [], `${label}, ${rows} rows: GEMVs below, single GEMMs above`);
      }
    }
    await program.dispose();
    assert.is(gpu.live.size, 0, 'each side-by-side allocation freed once');
  }
});

test('a batch cuBLASLt refuses runs as one GEMM a member into the same places, from then on', async () => {
  const m = tinyLlama(Rng.fromSeed(8), { ...TINY16, numKeyValueHeads: TINY16.numHeads }, 'f16');
  const gpu = new RecordingGpu();
  const record = gpu.gemm!;
  let refusals = 0;
  (gpu as { gemm: typeof gpu.gemm }).gemm = (g) => {
    if (g.batch) {
      refusals++;
      throw new BackendError('cuBLASLt has no algorithm for a GEMM (test)');
    }
    record(g);
  };
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 80, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', maxGraphRows: 64 });
  for (let t = 0; t < 2; t++) {
    const from = gpu.launches.length;
    const gemms = gpu.gemms.length;
    await program.run(stepBatch(range(12).map((i) => ({ tokens: [i % 50], cached: 0, blocks: [i] })), 4, 'last'));
    checkFootprints(gpu, from);
    // Per layer q, k, v, o, gate, up, down one GEMM each, then the LM head.
    assert.is(gpu.gemms.length - gemms, 7 * TINY16.numLayers + 1);
  }
  assert.is(refusals, 2 * TINY16.numLayers, 'each group asked once');
  await program.dispose();
});

test('graphs off, or fusion off: the same steps run eagerly with one kernel per node', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(4), TINY16, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 5, blockSize: 4 } }, { ...SETTINGS, activations: 'auto', graphs: false, fusion: { linear: false, rope: false } });
  for (const batch of prefillThenDecode()) {
    const from = gpu.launches.length;
    await program.run(batch);
    checkFootprints(gpu, from);
  }
  const kernels = new Set(gpu.launches.map((l) => l.kernel));
  assert.ok(kernels.has('rotary_f16') && kernels.has('kv_write_f16') && kernels.has('rms_norm_f16'));
  assert.is(program.stats.graphReplays, 0);
  await program.dispose();
  assert.is(gpu.live.size, 0);
});

test('16-bit activations with an output that is not a linear: converted to f32 by to_f32 after the last node', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(5), TINY16, 'bf16');
  // The same graph without its LM head: the output is the final norm.
  const last = m.graph.nodes[m.graph.nodes.length - 1];
  if (last.op !== 'linear') throw new Error('tiny Llama ends with its LM head');
  const graph: Graph = { ...m.graph, nodes: m.graph.nodes.slice(0, -1), output: last.inputs.x };
  const program = await compileProgram(gpu, graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 5, blockSize: 4 } }, { ...SETTINGS, activations: 'bf16' });
  for (const batch of prefillThenDecode()) {
    const from = gpu.launches.length;
    const out = await program.run(batch);
    assert.is(out.length, batch.selectedRows.length * TINY_LLAMA.hiddenSize);
    checkFootprints(gpu, from);
    assert.is(gpu.launches[gpu.launches.length - 1].kernel, 'to_f32_bf16');
  }
  await program.dispose();
  assert.is(gpu.live.size, 0);
});

for (const arch of ARCHS) {
  for (const activations of ['f32', 'bf16'] as ActivationChoice[]) {
    test(`fixture ${arch} (activations ${activations}): a 24-token prompt then 3 decode steps launch within bounds; dispose frees everything`, async () => {
      const m = await loadModel(join(FIXTURES, arch));
      const gpu = new RecordingGpu();
      try {
        const program = await compileProgram(gpu, m.graph, m.weights, { kvCache: { numBlocks: 4, blockSize: 16 } }, { ...SETTINGS, activations });
        const prompt = range(24).map((i) => (i * 7) % 50);
        const steps = [stepBatch([{ tokens: prompt, cached: 0, blocks: [2, 0] }], 16, 'last')];
        for (let t = 0; t < 3; t++) steps.push(stepBatch([{ tokens: [t + 1], cached: 24 + t, blocks: [2, 0] }], 16, 'last'));
        for (const batch of steps) {
          const from = gpu.launches.length;
          await program.run(batch);
          checkFootprints(gpu, from);
        }
        assert.is(program.stats.graphCaptures, 1, 'the second decode step captures a graph');
        assert.is(program.stats.graphReplays, 2, 'and it runs in the second and third decode steps');
        await program.dispose();
        assert.is(gpu.live.size, 0);
      } finally {
        m.weights.close();
      }
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// Errors before any kernel runs

async function rejects(p: () => Promise<unknown>, ...names: string[]): Promise<string> {
  try {
    await p();
  } catch (e) {
    const err = e as { code?: string; message: string };
    assert.is(err.code, 'E_BACKEND', err.message);
    for (const s of names) assert.match(err.message, s);
    return err.message;
  }
  assert.unreachable('expected a rejection');
  return '';
}

test('a KV cache larger than free memory: BackendError naming bytes asked and free; weights freed again', async () => {
  const gpu = new RecordingGpu({ freeBytes: 1 << 20 });
  const m = tinyLlama(Rng.fromSeed(3));
  const message = await rejects(() => compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 4096, blockSize: 16 } }, SETTINGS), 'KV cache', 'free');
  assert.match(message, '4096 blocks of 16 tokens need 16.0 MiB');
  assert.is(gpu.live.size, 0);
});

test('embedding id outside the table, and run after dispose, reject with BackendErrors', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(4));
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { numBlocks: 2, blockSize: 4 } }, SETTINGS);
  const bad = stepBatch([{ tokens: [1, TINY_LLAMA.vocabSize + 3], cached: 0, blocks: [0] }], 4);
  await rejects(() => program.run(bad), 'embed', String(TINY_LLAMA.vocabSize + 3));
  await program.dispose();
  await rejects(() => program.run(stepBatch([{ tokens: [1], cached: 0, blocks: [0] }], 4)), 'disposed');
  assert.is(gpu.live.size, 0);
});

test.run();
