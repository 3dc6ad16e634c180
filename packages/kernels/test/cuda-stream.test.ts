// Weight streaming in the CUDA backend, without a GPU: programs compiled with a weight stream on the
// recording Gpu, whose copy engine logs copies, event records and waits in order with the kernel launches.
// The log is replayed as two queues (compute, copy) with vector clocks, so the checks are about what the
// GPU would guarantee, not about the host's enqueue order: every kernel that reads a slot runs after the
// copy that filled it with the right weight and before any later copy into that slot. Also: nothing
// streamed is uploaded at compile, prefetch depths 0/1/3, pinned vs staged vs converted sources, no graph
// capture, errors that name the tensor, the timeline, and that dispose frees everything.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromF32, Rng, toF32, type FloatDType, type HostTensor, type WeightName } from '@zinfer/core';
import { memoryWeights, memoryWeightStream, range, stepBatch, tinyLlama, type MemoryStream } from '@zinfer/core/testing';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import type { CudaProgram } from '../src/cuda/program.js';
import { HostMemory } from '../src/cuda/host-memory.js';
import type { CopyOp } from '../src/cuda/recording-copies.js';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';
import { rejects } from './helpers/rejects.js';

const SETTINGS: CompileSettings = {
  activations: 'f32', cublas: false, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};
const CFG = { vocabSize: 61, hiddenSize: 32, numHeads: 4, numKeyValueHeads: 2, headDim: 8, intermediateSize: 48, numLayers: 5, slidingWindow: null };
const KV = { numBlocks: 16, blockSize: 4 };
const PROMPT = stepBatch([{ tokens: [3, 9, 14, 2, 7], cached: 0, blocks: [0, 1] }, { tokens: [5, 6, 1], cached: 0, blocks: [2] }], KV.blockSize, 'last');
// 13 rows: linears run as the tiled GEMM kernel (cuBLAS off), not the fused GEMVs.
const LONG = stepBatch([{ tokens: range(10, 20), cached: 0, blocks: [3, 4, 5] }, { tokens: [5, 6, 1], cached: 0, blocks: [6] }], KV.blockSize, 'last');
const DECODE = stepBatch([{ tokens: [11], cached: 5, blocks: [0, 1] }, { tokens: [4], cached: 3, blocks: [2] }], KV.blockSize, 'last');

interface Setup {
  gpu: RecordingGpu;
  host: HostMemory;
  stream: MemoryStream;
  program: CudaProgram;
  tensors: Map<string, HostTensor>;
}

async function setup(opts: { prefetch: number; dtype?: FloatDType; act?: FloatDType; pinned?: boolean; delayMs?: number }): Promise<Setup> {
  const gpu = new RecordingGpu({ cublas: false });
  const host = new HostMemory(gpu.copies.pinned);
  const { graph, tensors } = tinyLlama(Rng.fromSeed(7), CFG, opts.dtype ?? 'f32');
  const source = memoryWeights(opts.pinned ? pinnedCopies(host, tensors) : tensors);
  const stream = memoryWeightStream(graph, source, { prefetch: opts.prefetch, delayMs: opts.delayMs });
  const program = await compileProgram(gpu, graph, stream.resident, { kvCache: KV, stream }, { ...SETTINGS, activations: opts.act ?? 'f32', host });
  return { gpu, host, stream, program, tensors };
}

/** The tensors again, each in its own pinned block (as an offload tier given allocHost keeps them). */
function pinnedCopies(host: HostMemory, tensors: Map<string, HostTensor>): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [name, t] of tensors) {
    const buffer = host.alloc(t.data.byteLength);
    const data = t.data instanceof Float32Array ? new Float32Array(buffer) : new Uint16Array(buffer);
    data.set(t.data);
    out.set(name, { ...t, data });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Replaying the log: launch j is a compute-queue op placed after every log entry with launches ≤ j.

type Clock = [number, number]; // [compute ops, copy ops] seen
interface Stamped {
  queue: 0 | 1;
  clock: Clock;
}

function replay(gpu: RecordingGpu, fromLaunch: number, fromLog: number): { launches: Stamped[]; copies: (Stamped & { op: Extract<CopyOp, { op: 'copy' }> })[] } {
  const vc: [Clock, Clock] = [[0, 0], [0, 0]];
  const events = new Map<bigint, Clock>();
  const tick = (q: 0 | 1): Stamped => {
    vc[q][q]++;
    return { queue: q, clock: [...vc[q]] as Clock };
  };
  const launches: Stamped[] = [];
  const copies: (Stamped & { op: Extract<CopyOp, { op: 'copy' }> })[] = [];
  const log = gpu.copies.log.slice(fromLog);
  let k = 0;
  for (let j = fromLaunch; j <= gpu.launches.length; j++) {
    for (; k < log.length && log[k].launches <= j; k++) {
      const o = log[k];
      if (o.op === 'copy') copies.push({ ...tick(1), op: o });
      else {
        const q = o.queue === 'compute' ? 0 : 1;
        if (o.op === 'record') events.set(o.event, tick(q).clock);
        else vc[q] = [Math.max(vc[q][0], events.get(o.event)![0]), Math.max(vc[q][1], events.get(o.event)![1])];
      }
    }
    if (j < gpu.launches.length) launches.push(tick(0));
  }
  return { launches, copies };
}

const before = (a: Stamped, b: Stamped) => a.clock[a.queue] <= b.clock[a.queue];

/** The bytes a streamed weight has on the device: matrices in `matrix`, vectors widened to f32. */
function deviceBytes(t: HostTensor, matrix: FloatDType): Uint8Array {
  const dtype = t.shape.length === 1 ? 'f32' : matrix;
  const data = dtype === t.dtype ? t.data : fromF32(dtype, toF32(t.dtype, t.data));
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Every launch argument that points into a slot was filled by a copy that happens before the launch, holds
 * the right weight's bytes, and is not overwritten by any copy unordered with or before the launch.
 */
function checkOrdering(s: Setup, fromLaunch: number, fromLog: number, matrix: FloatDType): { slotReads: number } {
  const { launches, copies } = replay(s.gpu, fromLaunch, fromLog);
  const slots = (s.program as unknown as { parts: { streamed: { slotPtrs: bigint[]; plan: { slotBytes: number } } } }).parts.streamed;
  const inSlot = (p: bigint) => slots.slotPtrs.find((base) => p >= base && p < base + BigInt(slots.plan.slotBytes));
  const expected = new Map<string, WeightName[]>();
  for (const names of s.stream.groups) for (const n of names) {
    const key = Buffer.from(deviceBytes(s.tensors.get(n)!, matrix)).toString('base64');
    expected.set(key, [...(expected.get(key) ?? []), n]);
  }
  let slotReads = 0;
  s.gpu.launches.slice(fromLaunch).forEach((l, j) => {
    for (const arg of l.args) {
      if (typeof arg !== 'bigint' || inSlot(arg) === undefined) continue;
      slotReads++;
      const base = inSlot(arg)!;
      const same = copies.filter((c) => c.op.dst <= arg && arg < c.op.dst + BigInt(c.op.bytes));
      const filled = same.filter((c) => c.op.dst === arg && before(c, launches[j])).at(-1);
      assert.ok(filled, `${l.kernel} reads 0x${arg.toString(16)} in a slot that no earlier copy filled`);
      assert.ok(expected.has(Buffer.from(filled.op.data).toString('base64')), `${l.kernel}: the copy before it holds no streamed weight's bytes`);
      for (const c of copies) {
        if (c === filled || c.op.dst < base || c.op.dst >= base + BigInt(slots.plan.slotBytes)) continue;
        if (c.op.dst + BigInt(c.op.bytes) <= arg || c.op.dst >= arg + BigInt(filled.op.bytes)) continue;
        assert.ok(before(c, filled) || before(launches[j], c), `${l.kernel}: another copy into its slot range may overwrite the weight before it runs`);
      }
    }
  });
  return { slotReads };
}

// ---------------------------------------------------------------------------------------------------

for (const prefetch of [0, 1, 3]) {
  test(`prefetch ${prefetch}: nothing streamed is uploaded at compile; ${prefetch + 1} slots; each layer copied then read, in order, every step`, async () => {
    const s = await setup({ prefetch, delayMs: 1 });
    assert.is(s.gpu.copies.log.length, 0, 'no copies at compile');
    const resident = ['embed', 'final_norm', 'lm_head'].reduce((n, w) => n + deviceBytes(s.tensors.get(w)!, 'f32').byteLength, 0);
    assert.is(s.program.residentBytes.weights, resident, 'only the non-layer weights are resident');
    const layerBytes = s.stream.groups[0].reduce((n, w) => n + Math.ceil(deviceBytes(s.tensors.get(w)!, 'f32').byteLength / 256) * 256, 0);
    assert.is(s.program.streamSlotBytes, (prefetch + 1) * layerBytes);
    for (const batch of [PROMPT, LONG, DECODE, DECODE]) {
      const [l0, c0] = [s.gpu.launches.length, s.gpu.copies.log.length];
      const logits = await s.program.run(batch);
      assert.is(logits.length, 2 * CFG.vocabSize);
      const { slotReads } = checkOrdering(s, l0, c0, 'f32');
      if (batch === LONG) assert.ok(s.gpu.launches.slice(l0).some((l) => /^gemm_/.test(l.kernel)), 'the long prompt runs the GEMM kernel');
      assert.ok(slotReads >= CFG.numLayers * 4, `${slotReads} slot reads`);
      const copies = s.gpu.copies.log.slice(c0).filter((o) => o.op === 'copy');
      assert.is(copies.length, CFG.numLayers * s.stream.groups[0].length, 'every streamed weight copied once a step');
    }
    assert.equal(s.stream.acquired, [0, 1, 2, 3].flatMap(() => range(CFG.numLayers)), 'acquires in group order, each group once a step');
    assert.is(s.program.stats.graphCaptures, 0, 'streamed decode steps are not captured');
    await s.program.dispose();
  });
}

test('prefetch k: group g+k is being copied before group g is done; with prefetch 0 never', async () => {
  for (const prefetch of [0, 1, 3]) {
    const s = await setup({ prefetch });
    await s.program.run(PROMPT);
    const log = s.gpu.copies.log;
    const starts = log.filter((o) => o.op === 'copy').map((o) => o.launches);
    // The launch count when the first copy of each group was enqueued: groups of 9 weights each.
    const groupStart = range(CFG.numLayers).map((g) => starts[g * 9]);
    const computeEnds = log.filter((o) => o.op === 'record' && o.queue === 'compute').map((o) => o.launches);
    // Records on the compute queue: the step anchor, then per group a start and an end.
    const groupEnd = range(CFG.numLayers).map((g) => computeEnds[2 + 2 * g]);
    for (let g = 0; g + prefetch < CFG.numLayers; g++) {
      if (prefetch > 0) assert.ok(groupStart[g + prefetch] <= groupEnd[g] - 1, `prefetch ${prefetch}: group ${g + prefetch} is enqueued while group ${g} computes`);
      if (g + prefetch + 1 < CFG.numLayers) assert.ok(groupStart[g + prefetch + 1] >= groupEnd[g], `group ${g + prefetch + 1} waits for group ${g}'s slot`);
    }
    await s.program.dispose();
  }
});

test('pinned tensors are copied straight from their blocks; pageable ones through staging; stored f16 widened on the host in f32 mode', async () => {
  const pinned = await setup({ prefetch: 1, pinned: true });
  await pinned.program.run(PROMPT);
  assert.is(pinned.program.streamStats!.stagedBytes, 0);
  assert.ok(pinned.program.streamStats!.copiedBytes > 0);
  await pinned.program.dispose();

  const f16 = await setup({ prefetch: 1, dtype: 'f16' });
  const [l0, c0] = [f16.gpu.launches.length, f16.gpu.copies.log.length];
  await f16.program.run(PROMPT);
  checkOrdering(f16, l0, c0, 'f16'); // matrices stay f16 (as the resident embedding is), norms arrive as f32
  assert.is(f16.program.streamStats!.stagedBytes, f16.program.streamStats!.copiedBytes);
  assert.ok(f16.gpu.launches.some((l) => /_f16_f32$/.test(l.kernel)), 'kernels read f16 weights in f32 mode');
  await f16.program.dispose();

  const act16 = await setup({ prefetch: 2, act: 'f16' });
  const [l1, c1] = [act16.gpu.launches.length, act16.gpu.copies.log.length];
  await act16.program.run(DECODE);
  checkOrdering(act16, l1, c1, 'f16'); // f32 stored, f16 activations: converted into staging
  await act16.program.dispose();
});

test('timeline: a fetch and a compute event per group and step, compute reported to the stream; runArgmax streams too', async () => {
  const s = await setup({ prefetch: 1 });
  await s.program.run(PROMPT);
  const tl = s.program.streamStats!.timeline;
  assert.is(tl.length, 2 * CFG.numLayers);
  for (const g of range(CFG.numLayers)) {
    const [fetch, compute] = [tl.find((e) => e.group === g && e.kind === 'fetch')!, tl.find((e) => e.group === g && e.kind === 'compute')!];
    assert.ok(fetch.end >= fetch.start && compute.end >= compute.start && compute.start >= fetch.end, `group ${g}: copied, then computed`);
  }
  assert.is(s.stream.events.filter((e) => e.kind === 'compute').length, CFG.numLayers);
  const ids = await s.program.runArgmax(DECODE);
  assert.is(ids.length, 2);
  assert.is(s.program.streamStats!.steps, 2);
  await s.program.dispose();
});

test('copies are waited for by polling; dispose frees slots, staging and events', async () => {
  const s = await setup({ prefetch: 1 });
  s.gpu.copies.pollsBeforeDone = 3;
  await s.program.run(PROMPT);
  await s.program.dispose();
  assert.is(s.gpu.live.size, 0, 'no device allocation left');
  assert.is(s.gpu.copies.liveEvents, 0, 'no event left');
  assert.is(s.host.bytes, 0, 'staging freed');
});

test('errors name the tensor: a stream group with a weight the graph lacks, a tier giving a wrong shape (the group is still released)', async () => {
  const gpu = new RecordingGpu({ cublas: false });
  const host = new HostMemory(gpu.copies.pinned);
  const { graph, tensors } = tinyLlama(Rng.fromSeed(7), CFG);
  const stream = memoryWeightStream(graph, memoryWeights(tensors), { prefetch: 1 });
  const bad = { ...stream, groups: [[...stream.groups[0], 'model.layers.0.nope'], ...stream.groups.slice(1)] };
  await rejects(compileProgram(gpu, graph, stream.resident, { kvCache: KV, stream: bad }, { ...SETTINGS, host }), /model\.layers\.0\.nope/);
  assert.is(gpu.live.size, 0, 'a failed compile frees what it allocated');

  const wrong = new Map(tensors);
  wrong.set('model.layers.2.up', { ...tensors.get('model.layers.2.up')!, shape: [24, 64] });
  const s2 = memoryWeightStream(graph, memoryWeights(wrong), { prefetch: 1 });
  const program = await compileProgram(gpu, graph, s2.resident, { kvCache: KV, stream: s2 }, { ...SETTINGS, host });
  await rejects(program.run(PROMPT), /model\.layers\.2\.up is f32 \[24, 64\]/);
  await rejects(program.run(PROMPT), /model\.layers\.2\.up/); // acquired again: every group was released
  await program.dispose();
});

test('a backend without pinned memory cannot compile a stream; prefetch must be an integer', async () => {
  const gpu = new RecordingGpu({ cublas: false });
  const { graph, tensors } = tinyLlama(Rng.fromSeed(7), CFG);
  const stream = memoryWeightStream(graph, memoryWeights(tensors), { prefetch: 1 });
  await rejects(compileProgram(gpu, graph, stream.resident, { kvCache: KV, stream }, SETTINGS), /pinned host memory/);
  const host = new HostMemory(gpu.copies.pinned);
  await rejects(compileProgram(gpu, graph, stream.resident, { kvCache: KV, stream: { ...stream, prefetch: 1.5 } }, { ...SETTINGS, host }), /prefetch/);
  assert.is(gpu.live.size, 0);
});

test.run();

