// Weight streaming on the cpu backend (ZeRO-Inference): every layer's weights streamed through
// prefetch + 1 slots give the resident program's outputs bit for bit over prefill and decode steps, on
// tinyLlama (f32, bf16; more layers than slots, so slots are reused by layers with other weights) and on
// every fixture model; acquires come in group order, compute is recorded per group, and bad tensors from
// the stream are typed errors naming the weight.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from './helpers/rejects.js';
import { loadModel, Rng, type Graph, type KernelBackend, type StepBatch, type WeightSource, type WeightStream } from '@zinfer/core';
import { memoryWeights, memoryWeightStream, randomTensor, stepBatch, tinyLlama, TINY_LLAMA, type MemoryStream } from '@zinfer/core/testing';
import { cpuBackend } from '../src/cpu.js';
import { WasmHeap } from '../src/cpu/heap.js';
import { packedBytes, packWeight } from '../src/cpu/pack.js';
import { ThreadPool } from '../src/cpu/thread-pool.js';
import { loadKernelModule } from '../src/cpu/wasm-module.js';
import type { CpuProgram } from '../src/cpu/program.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

const FIXTURES = join(import.meta.dirname, '../../../fixtures/models');
const ARCHS = readdirSync(FIXTURES).filter((d) => statSync(join(FIXTURES, d)).isDirectory());
const KV = { numBlocks: 8, blockSize: 4 };
const backend = cpuBackend({ threads: 2 });
/** Every kernel split over the pool, so copies overlap kernels (ThreadPool background) even on tiny layers. */
const splitting = cpuBackend({ threads: 2, minParallelWork: 0 });

/** A prompt step of two sequences, then three decode steps (KV cache carried between them). */
function steps(vocab: number): StepBatch[] {
  const t = (i: number) => (i * 7 + 3) % vocab;
  const out = [stepBatch([{ tokens: [1, 2, 3, 4, 5, 6].map(t), cached: 0, blocks: [0, 1, 3] }, { tokens: [7, 8, 9].map(t), cached: 0, blocks: [2, 4] }], KV.blockSize, 'all')];
  for (let k = 0; k < 3; k++) out.push(stepBatch([{ tokens: [t(10 + k)], cached: 6 + k, blocks: [0, 1, 3] }, { tokens: [t(20 + k)], cached: 3 + k, blocks: [2, 4] }], KV.blockSize));
  return out;
}

async function runAll(b: KernelBackend, graph: Graph, weights: WeightSource, batches: readonly StepBatch[], stream?: WeightStream): Promise<{ outs: Float32Array[]; program: CpuProgram }> {
  const program = (await b.compile(graph, weights, { kvCache: KV, stream })) as CpuProgram;
  const outs: Float32Array[] = [];
  try {
    for (const s of batches) outs.push(await program.run(s));
  } finally {
    await program.dispose();
  }
  return { outs, program };
}

/** Bit-identical outputs, naming the first element that differs. */
function assertSame(got: readonly Float32Array[], want: readonly Float32Array[], what: string): void {
  assert.is(got.length, want.length);
  got.forEach((g, s) => {
    assert.is(g.length, want[s].length, `${what}: step ${s} length`);
    const i = g.findIndex((v, j) => v !== want[s][j]);
    assert.ok(i < 0, `${what}: step ${s} element ${i}: ${g[i]} !== ${want[s][i]}`);
  });
}

/** Each step acquires every group once, in order; one compute event per group per step. */
function assertSchedule(ms: MemoryStream, stepCount: number, what: string): void {
  const groups = ms.groups.length;
  assert.equal(ms.acquired, Array.from({ length: stepCount * groups }, (_, i) => i % groups), `${what}: acquire order`);
  const compute = ms.events.filter((e) => e.kind === 'compute');
  assert.equal(compute.map((e) => e.group), ms.acquired, `${what}: compute events`);
  for (const e of ms.events) assert.ok(e.start <= e.end, `${what}: event ${e.kind} ${e.group} ends before it starts`);
}

// Odd sizes: panels with padding rows (N % 8) and groups with padding inputs (K % 8) in the packed slots.
const ODD = { ...TINY_LLAMA, numLayers: 5, hiddenSize: 36, intermediateSize: 50 };
for (const [dtype, cfg, shape] of [['f32', TINY_LLAMA, ''], ['bf16', TINY_LLAMA, ''], ['f32', ODD, ', odd sizes'], ['bf16', ODD, ', odd sizes']] as const) {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(11), { ...cfg, numLayers: 5 }, dtype);
  const batches = steps(TINY_LLAMA.vocabSize);
  for (const [b, how] of [[backend, 'default split'], [splitting, 'every kernel split']] as const) {
    test(`tinyLlama ${dtype}${shape}, ${how}: streamed layers give the resident outputs bit for bit at prefetch 0, 1, 3`, async () => {
      const want = (await runAll(b, graph, memoryWeights(tensors), batches)).outs;
      for (const prefetch of [0, 1, 3]) {
        const ms = memoryWeightStream(graph, memoryWeights(tensors), { prefetch });
        const { outs, program } = await runAll(b, graph, ms.resident, batches, ms);
        assertSame(outs, want, `prefetch ${prefetch}`);
        assertSchedule(ms, batches.length, `prefetch ${prefetch}`);
        assert.ok(program.memory.streamSlots > 0 && program.streamCopies!.bytes > 0);
      }
    });
  }
}

test('acquires run prefetch groups ahead of the computing one, never further', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(12), { ...TINY_LLAMA, numLayers: 6 });
  for (const prefetch of [0, 1, 3]) {
    const ms = memoryWeightStream(graph, memoryWeights(tensors), { prefetch });
    await runAll(backend, graph, ms.resident, steps(TINY_LLAMA.vocabSize).slice(0, 1), ms);
    const fetchStart = (g: number) => ms.events.find((e) => e.kind === 'fetch' && e.group === g)!.start;
    const compute = (g: number) => ms.events.find((e) => e.kind === 'compute' && e.group === g)!;
    for (let g = 0; g + 1 < ms.groups.length; g++) {
      // g + prefetch + 1 reuses g's slot: acquired only once g is done; g + prefetch while g computes.
      if (g + prefetch + 1 < ms.groups.length) assert.ok(fetchStart(g + prefetch + 1) >= compute(g).end, `prefetch ${prefetch}: group ${g + prefetch + 1} acquired before group ${g} was done`);
      if (prefetch > 0 && g + prefetch < ms.groups.length) assert.ok(fetchStart(g + prefetch) <= compute(g).start, `prefetch ${prefetch}: group ${g + prefetch} not acquired ahead of group ${g}`);
    }
  }
});

test('late acquires (delayMs) give the same outputs; copies overlap the workers\' kernels', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(13), { ...TINY_LLAMA, numLayers: 4, hiddenSize: 64, intermediateSize: 160, numHeads: 8, numKeyValueHeads: 4 }, 'bf16');
  const batches = steps(TINY_LLAMA.vocabSize);
  const want = (await runAll(splitting, graph, memoryWeights(tensors), batches)).outs;
  for (const prefetch of [0, 1, 3]) {
    const ms = memoryWeightStream(graph, memoryWeights(tensors), { prefetch, delayMs: 3 });
    const { outs, program } = await runAll(splitting, graph, ms.resident, batches, ms);
    assertSame(outs, want, `delayed, prefetch ${prefetch}`);
    assertSchedule(ms, batches.length, `delayed, prefetch ${prefetch}`);
    const copies = program.streamCopies!;
    if (prefetch > 0) assert.ok(copies.overlappedBytes > 0, `prefetch ${prefetch}: no copy overlapped a kernel (${JSON.stringify(copies)})`);
    else assert.is(copies.overlappedBytes, 0, 'prefetch 0 has nothing to copy ahead');
  }
});

test('the program reports resident weights and slots: (prefetch + 1) × the largest group, placed', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(14), { ...TINY_LLAMA, numLayers: 5 }, 'bf16');
  const resident = (await runAll(backend, graph, memoryWeights(tensors), [])).program;
  assert.is(resident.memory.streamSlots, 0);
  assert.is(resident.memory.streamStaging, 0);
  assert.is(resident.weightBytes, resident.memory.residentWeights);
  for (const prefetch of [0, 2]) {
    const ms = memoryWeightStream(graph, memoryWeights(tensors), { prefetch });
    const p = (await runAll(backend, graph, ms.resident, [], ms)).program;
    const perLayer = (resident.memory.residentWeights - p.memory.residentWeights) / 5; // every layer has the same shapes
    assert.ok(perLayer > 0);
    assert.is(p.memory.streamSlots, (prefetch + 1) * perLayer, `prefetch ${prefetch}`);
    assert.is(p.memory.streamStaging, 256 * 1024); // a chunk: every panel of this model is smaller
    assert.is(p.weightBytes, p.memory.residentWeights + p.memory.streamSlots + p.memory.streamStaging);
    assert.is(p.memory.kvCache, resident.memory.kvCache);
  }
});

test('a streamed tensor with a wrong dtype or shape rejects naming the weight; the next step runs clean', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(15), { ...TINY_LLAMA, numLayers: 3 });
  const batches = steps(TINY_LLAMA.vocabSize);
  const want = (await runAll(backend, graph, memoryWeights(tensors), batches)).outs;
  const bad = { name: 'model.layers.1.up', t: tensors.get('model.layers.1.up')! };
  const cases = [
    { tensor: { ...bad.t, dtype: 'bf16' as const, data: new Uint16Array(bad.t.data.length) }, message: /weight model\.layers\.1\.up is bf16.*tensor model\.layers\.1\.up; expected f32; found bf16/ },
    { tensor: { ...bad.t, shape: [bad.t.shape[1], bad.t.shape[0]] }, message: /weight model\.layers\.1\.up has the wrong shape.*tensor model\.layers\.1\.up; expected \[48, 32\]; found \[32, 48\]/ },
  ];
  for (const { tensor, message } of cases) {
    let fault = true;
    const source: WeightSource = { names: () => [...tensors.keys()], get: (n) => (fault && n === bad.name ? tensor : tensors.get(n)!) };
    const ms = memoryWeightStream(graph, source, { prefetch: 1 });
    const program = (await backend.compile(graph, ms.resident, { kvCache: KV, stream: ms })) as CpuProgram;
    try {
      await rejects(program.run(batches[0]), message);
      fault = false; // every group was released: the same stream serves the next steps
      const outs: Float32Array[] = [];
      for (const s of batches) outs.push(await program.run(s));
      assertSame(outs, want, 'after the failed step');
    } finally {
      await program.dispose();
    }
  }
});

test('groups whose node spans overlap run with prefetch ≥ 1 and are refused at prefetch 0 (one slot cannot hold both)', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(18), { ...TINY_LLAMA, numLayers: 3 });
  const batches = steps(TINY_LLAMA.vocabSize);
  const want = (await runAll(backend, graph, memoryWeights(tensors), batches)).outs;
  const layers = memoryWeightStream(graph, memoryWeights(tensors)).groups;
  // Layer 1's output projection joins group 0: group 0 is still read after group 1's first node.
  const moved = 'model.layers.1.o';
  const groups = [[...layers[0], moved], layers[1].filter((n) => n !== moved), layers[2]];
  const residentNames = [...tensors.keys()].filter((n) => !groups.flat().includes(n));
  const resident: WeightSource = { names: () => residentNames, get: (n) => tensors.get(n)! };
  const acquired: number[] = [];
  const stream = (prefetch: number): WeightStream => ({
    groups, prefetch,
    acquire: async (g) => (acquired.push(g), groups[g].map((name) => ({ name, tensor: tensors.get(name)! }))),
    release: () => {},
    recordCompute: () => {},
  });
  await rejects(backend.compile(graph, resident, { kvCache: KV, stream: stream(0) }), /group 1 is read \(node \d+\) while group 0, whose slot it reuses, still is.*field stream\.prefetch/);
  for (const prefetch of [1, 2]) {
    acquired.length = 0;
    assertSame((await runAll(backend, graph, resident, batches, stream(prefetch))).outs, want, `prefetch ${prefetch}`);
    assert.equal(acquired, batches.flatMap(() => [0, 1, 2]));
  }
});

test('compile refuses a stream naming an unknown weight, a weight twice, or a bad prefetch', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(16));
  const ms = memoryWeightStream(graph, memoryWeights(tensors));
  const compile = (stream: WeightStream) => backend.compile(graph, ms.resident, { kvCache: KV, stream });
  await rejects(compile({ ...ms, groups: [...ms.groups, ['model.layers.9.q']] }), /names model\.layers\.9\.q, which the graph does not read.*field stream\.groups\[2\]/);
  await rejects(compile({ ...ms, groups: [ms.groups[0], [...ms.groups[1], ms.groups[0][0]]] }), /is in stream groups 0 and 1/);
  await rejects(compile({ ...ms, prefetch: -1 }), /field stream\.prefetch/);
  await rejects(compile({ ...ms, groups: [ms.groups[1], ms.groups[0]] }), /group 1 is read before group 0.*field stream\.groups/);
  assert.is(backend.streaming, true);
});

test('k_pack_panels packs staged rows into the bytes packWeight writes (every dtype, odd sizes, split or not)', async () => {
  const km = await loadKernelModule();
  const heap = new WasmHeap();
  const pool = new ThreadPool(km.module, heap.memory, km.names, 2, 2);
  await pool.start();
  const k = pool.kernel('k_pack_panels');
  const rng = Rng.fromSeed(17);
  try {
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      for (const [N, K] of [[8, 8], [13, 21], [3, 40], [64, 7], [17, 1]]) {
        const t = randomTensor(rng, dtype, [N, K]);
        const bytes = packedBytes(dtype, N, K);
        const [want, got, staged, args] = [heap.alloc(bytes, 'want'), heap.alloc(bytes, 'got'), heap.alloc(t.data.byteLength, 'rows'), heap.alloc(64, 'args')];
        packWeight(heap, want, t);
        for (const parallel of [false, true]) {
          heap.u8.fill(0xff, got, got + bytes); // padding must be written, not left over
          heap.u8.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), staged);
          heap.i32.set([staged, got, N, K, dtype === 'f32' ? 4 : 2], args >>> 2);
          pool.run(k, args, parallel);
          assert.equal(heap.u8.slice(got, got + bytes), heap.u8.slice(want, want + bytes), `${dtype} [${N}, ${K}] ${parallel ? 'split' : 'one thread'}`);
        }
      }
    }
  } finally {
    await pool.close();
  }
});

for (const arch of ARCHS) {
  test(`${arch}: streamed layers give the resident outputs bit for bit (prefetch 0, 1, 3)`, async () => {
    const model = await loadModel(join(FIXTURES, arch));
    try {
      const batches = steps(Math.min(model.graph.values[model.graph.output].width, 1000));
      const want = (await runAll(backend, model.graph, model.weights, batches)).outs;
      for (const prefetch of [0, 1, 3]) {
        const ms = memoryWeightStream(model.graph, model.weights, { prefetch });
        assert.ok(ms.groups.length >= 2, `${arch}: ${ms.groups.length} layer groups`);
        assertSame((await runAll(backend, model.graph, ms.resident, batches, ms)).outs, want, `${arch}, prefetch ${prefetch}`);
        assertSchedule(ms, batches.length, `${arch}, prefetch ${prefetch}`);
      }
    } finally {
      model.weights.close();
    }
  });
}

test.run();
