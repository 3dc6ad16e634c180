// The reference backend: the whole conformance suite (the reference is the spec, so no oracle), each op
// against hand-computed values, erf against known values, f16/bf16 weights against the same weights in
// f32, and the errors a user can hit.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from './helpers/rejects.js';
import {
  f16ToF32, f32ToBf16, f32ToF16, GraphBuilder, hostTensor, Rng, toF32,
  type ActivationFn, type FloatDType, type Graph, type HostTensor, type KernelBackend, type StepBatch,
} from '@zinfer/core';
import { kernelBackendConformance, memoryWeights, randomTensor, stepBatch, tinyLlama, weightInfos } from '@zinfer/core/testing';
import {
  activation, attention, embedding, erf, F16_TO_F32, gatherRows, gelu, geluTanh, KvCache, layerNorm, linear,
  referenceBackend, relu, rmsNorm, rotary, silu, add,
} from '../src/reference.js';

const backend = referenceBackend();

// ---------------------------------------------------------------------------------------------------
// Conformance: every case of the suite, registered as one uvu test each.

for (const c of kernelBackendConformance(backend)) test(c.name, c.run);

// The oracle cases are left out above (the reference is the oracle); running them against a second
// reference instance checks that the suite's oracle path itself works.
for (const c of kernelBackendConformance(backend, { oracle: referenceBackend() })) {
  if (c.name.includes(': oracle: ')) test(`self-check ${c.name}`, c.run);
}

// ---------------------------------------------------------------------------------------------------
// The suite catches broken backends: reference wrapped so that one thing is wrong.

type Mutation = { graph?: (g: Graph) => Graph; batch?: (b: StepBatch) => StepBatch; tensor?: (t: HostTensor) => HostTensor; keepAfterDispose?: boolean };

function mutant(name: string, m: Mutation): KernelBackend {
  const inner = referenceBackend();
  return {
    ...inner,
    name,
    async compile(graph, weights, options) {
      const source = m.tensor ? { names: () => weights.names(), get: (n: string) => m.tensor!(weights.get(n)) } : weights;
      const program = await inner.compile(m.graph ? m.graph(graph) : graph, source, options);
      let live = true;
      return {
        run: (b) => (live || m.keepAfterDispose ? program.run(m.batch ? m.batch(b) : b) : program.run(b)),
        async dispose() {
          live = false;
          if (!m.keepAfterDispose) await program.dispose();
        },
      };
    },
  };
}

async function expectCaseFails(b: KernelBackend, fragment: string, message: RegExp): Promise<void> {
  const c = kernelBackendConformance(b).find((x) => x.name.includes(fragment));
  assert.ok(c, `no case named like ${fragment}`);
  try {
    await c.run();
  } catch (e) {
    assert.match((e as Error).message, message);
    return;
  }
  assert.unreachable(`${b.name} passed "${c.name}"`);
}

const noWindow = (g: Graph): Graph => ({ ...g, nodes: g.nodes.map((n) => (n.op === 'attention' ? { ...n, attrs: { ...n.attrs, slidingWindow: null } } : n)) });

test('the suite catches a backend that ignores sliding windows', async () => {
  const b = mutant('no-window', { graph: noWindow });
  await expectCaseFails(b, 'sliding window: tokens outside', /after changing token 6 \(outside the window\)/);
  await expectCaseFails(b, 'sliding window 2, permuted', /attention window=2: \d+ of 40 elements differ/);
});

test('the suite catches a backend that reads bf16 weights as f16', async () => {
  const b = mutant('bf16-as-f16', { tensor: (t) => (t.dtype === 'bf16' ? { ...t, dtype: 'f16' } : t) });
  await expectCaseFails(b, 'linear (bf16', /linear bf16: 4 of 4 elements differ/);
});

test('the suite catches a backend that ignores block tables', async () => {
  // Reads each sequence's cache as if its blocks were 0, 1, 2, ... while writing where the slots say.
  const b = mutant('no-block-table', { batch: (bt) => ({ ...bt, sequences: bt.sequences.map((s) => ({ ...s, blockTable: Int32Array.from(s.blockTable, (_, i) => i) })) }) });
  await expectCaseFails(b, 'block-table indirection', /blocks \[6, 1, 7, 3\] vs \[0, 1, 2, 3\]/);
  await expectCaseFails(b, 'full causal, permuted block table', /attention window=null/);
});

test('the suite catches a backend whose programs still run after dispose', async () => {
  await expectCaseFails(mutant('immortal', { keepAfterDispose: true }), 'run after dispose', /expected a rejection, but it succeeded/);
});

test('the suite catches a backend whose output depends on the batch', async () => {
  // Drops the second sequence's cached context: fine alone, wrong when batched.
  const b = mutant('batch-dependent', { batch: (bt) => ({ ...bt, sequences: bt.sequences.map((s, i) => (i === 1 ? { ...s, contextLength: s.queryLength } : s)) }) });
  await expectCaseFails(b, 'batch invariance', /step 2 \(B: 3-token chunk, A: 1 decode token\)/);
});

// ---------------------------------------------------------------------------------------------------
// erf and the activations

test('erf matches known values to 1e-7 (Cody: to ~1e-16)', () => {
  const known: [number, number][] = [[0.5, 0.5204998778130465], [1, 0.8427007929497149], [-2, -0.9953222650189527], [3, 0.9999779095030014], [0, 0], [0.1, 0.1124629160182849], [-0.46875, -0.49261347321793797], [4.5, 0.9999999998033839], [10, 1]];
  for (const [x, e] of known) assert.ok(Math.abs(erf(x) - e) < 1e-7, `erf(${x}) = ${erf(x)}, expected ${e}`);
  for (const [x, e] of known) assert.ok(Math.abs(erf(x) - e) < 1e-15, `erf(${x}) = ${erf(x)} is not double-accurate`);
  assert.is(erf(Infinity), 1);
  assert.is(erf(-Infinity), -1);
  assert.ok(Number.isNaN(erf(NaN)));
  for (let x = -6; x <= 6; x += 0.37) assert.is(erf(-x), -erf(x), `erf is odd at ${x}`);
});

test('activations at hand-computed points', () => {
  assert.is(relu(-2), 0);
  assert.is(relu(1.5), 1.5);
  assert.ok(Math.abs(silu(1) - 1 / (1 + Math.exp(-1))) < 1e-15);
  assert.is(silu(-1000), -0); // exp overflow gives x / Infinity, not NaN
  assert.ok(Math.abs(gelu(1) - 0.8413447460685429) < 1e-12);
  assert.ok(Math.abs(gelu(-0.5) - -0.15426876936299344) < 1e-12);
  assert.ok(Math.abs(geluTanh(1) - 0.8411919906082768) < 1e-12);
  const x = Float32Array.of(-1, 0, 2);
  assert.equal(Array.from(activation('relu', x)), [0, 0, 2]);
  assert.equal(Array.from(activation('relu', x, Float32Array.of(5, 5, 0.5))), [0, 0, 1]);
  // fn(gate)·up rounds to f32 once.
  assert.is(activation('silu', Float32Array.of(0.3), Float32Array.of(3))[0], Math.fround(silu(Math.fround(0.3)) * 3));
});

// ---------------------------------------------------------------------------------------------------
// Each op against hand-computed values

const f32 = (xs: number[]) => Float32Array.from(xs);
const t32 = (shape: number[], xs: number[]) => hostTensor('f32', shape, f32(xs));

test('embedding: offset and scale, and an id outside the table names table and id', () => {
  const table = t32([3, 2], [1, 2, 3, 4, 5, 6]);
  assert.equal(Array.from(embedding(Int32Array.of(1, -1), table, 'tok', 1, 2)), [10, 12, 2, 4]);
  assert.throws(() => embedding(Int32Array.of(0, 3), table, 'tok', 0, 1), (e: Error) => e.name === 'BackendError' && /tok/.test(e.message) && / 3 /.test(e.message));
  assert.throws(() => embedding(Int32Array.of(-2), table, 'tok', 1, 1), /token id -2 \(row 0\) is outside table tok/);
});

test('linear: y = x·Wᵀ + b', () => {
  const x = f32([1, 2, 3, -1, 0, 2]); // [2, 3]
  const w = t32([2, 3], [1, 0, -1, 0.5, 2, 1]);
  const b = t32([2], [10, -10]);
  assert.equal(Array.from(linear(x, 2, w, b)), [1 - 3 + 10, 0.5 + 4 + 3 - 10, -1 - 2 + 10, -0.5 + 2 - 10]);
  assert.equal(Array.from(linear(x, 2, w, null)), [-2, 7.5, -3, 1.5]);
});

test('layerNorm and rmsNorm: whole rows and groups', () => {
  const x = f32([1, 2, 3, 4]);
  const ln = layerNorm(x, 4, t32([4], [1, 1, 1, 1]), t32([4], [0, 0, 0, 1]), 0);
  const s = Math.sqrt(1.25);
  assert.equal(Array.from(ln), [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s + 1].map(Math.fround));
  const rms = rmsNorm(x, 2, t32([2], [1, 10]), 0);
  const [r1, r2] = [Math.sqrt(2.5), Math.sqrt(12.5)];
  assert.equal(Array.from(rms), [1 / r1, 20 / r1, 3 / r2, 40 / r2].map(Math.fround));
});

test('add and gatherRows', () => {
  assert.equal(Array.from(add(f32([1, 2]), f32([0.5, -2]))), [1.5, 0]);
  assert.equal(Array.from(gatherRows(f32([0, 1, 10, 11, 20, 21]), 2, Int32Array.of(2, 0))), [20, 21, 0, 1]);
});

test('rotary: a quarter turn, partial rotary pass-through, interleaved pairs, attentionScaling', () => {
  const q = Math.PI / 2;
  const base = { heads: 1, headDim: 4, rotaryDim: 2, invFreq: [q], attentionScaling: 1, interleaved: false };
  // rotaryDim 2: dims 0 and 1 rotate by p·π/2, dims 2 and 3 pass through.
  const out = rotary(f32([1, 0, 7, 8]), Int32Array.of(1), base);
  assert.ok(Math.abs(out[0]) < 1e-7 && Math.abs(out[1] - 1) < 1e-7, `${out}`);
  assert.equal(Array.from(out.subarray(2)), [7, 8]);
  // rotate-half pairs (0, 2) and (1, 3); interleaved pairs (0, 1) and (2, 3).
  const full = { ...base, rotaryDim: 4, invFreq: [q, 0] };
  const half = rotary(f32([1, 5, 0, 6]), Int32Array.of(1), full);
  assert.equal(Array.from(half, (v) => Math.round(v * 1e6) / 1e6), [0, 5, 1, 6]);
  const inter = rotary(f32([1, 0, 5, 6]), Int32Array.of(1), { ...full, interleaved: true });
  assert.equal(Array.from(inter, (v) => Math.round(v * 1e6) / 1e6), [0, 1, 5, 6]);
  const scaled = rotary(f32([2, 3]), Int32Array.of(0), { ...base, headDim: 2, attentionScaling: 0.5 });
  assert.equal(Array.from(scaled), [1, 1.5]);
});

test('attention: one key gives its value, equal keys average, GQA maps heads to kv head h / (heads / kvHeads)', () => {
  const cache = new KvCache({ layers: 1, kvHeads: 2, headDim: 1 }, { numBlocks: 2, blockSize: 2 });
  const attrs = { layer: 0, heads: 4, kvHeads: 2, headDim: 1, scale: 1, slidingWindow: null };
  // Two tokens in block 1 (slots 2, 3); keys all 0 so every weight is equal.
  const batch = stepBatch([{ tokens: [0, 0], cached: 0, blocks: [1] }], 2, 'all');
  const q = f32([1, 1, 1, 1, 1, 1, 1, 1]); // [2 rows, 4 heads]
  const k = f32([0, 0, 0, 0]); // [2 rows, 2 kv heads]
  const v = f32([1, 10, 3, 30]);
  const out = attention(q, k, v, attrs, cache, batch);
  // Row 0 sees only itself; row 1 averages rows 0 and 1. Heads 0, 1 → kv head 0; heads 2, 3 → kv head 1.
  assert.equal(Array.from(out), [1, 1, 10, 10, 2, 2, 20, 20]);
  assert.equal(Array.from(cache.v[0]), [0, 0, 0, 0, 1, 10, 3, 30]);
  // Decode a third token into block 0 with a sliding window of 2: it sees positions 1 and 2 only.
  const step = stepBatch([{ tokens: [0], cached: 2, blocks: [1, 0] }], 2, 'all');
  const w2 = attention(f32([1, 1, 1, 1]), f32([0, 0]), f32([5, 50]), { ...attrs, slidingWindow: 2 }, cache, step);
  assert.equal(Array.from(w2), [4, 4, 40, 40]);
});

test('softmax is stable for large scores', () => {
  const cache = new KvCache({ layers: 1, kvHeads: 1, headDim: 1 }, { numBlocks: 1, blockSize: 2 });
  const batch = stepBatch([{ tokens: [0, 0], cached: 0, blocks: [0] }], 2, 'all');
  const out = attention(f32([1000, 1000]), f32([1000, 999]), f32([1, 2]), { layer: 0, heads: 1, kvHeads: 1, headDim: 1, scale: 1, slidingWindow: null }, cache, batch);
  assert.ok(Number.isFinite(out[1]));
  assert.ok(Math.abs(out[1] - 1) < 1e-6, `${out[1]}`); // exp(1e6 − 999000) dominates: the first value wins
});

// ---------------------------------------------------------------------------------------------------
// f16 / bf16 weights: exactly the f32 results of the same (converted) weights

test('the f16 lookup table equals f16ToF32 for all 65536 bit patterns', () => {
  for (let h = 0; h < 65536; h++) assert.ok(Object.is(F16_TO_F32[h], Math.fround(f16ToF32(h))) || (Number.isNaN(F16_TO_F32[h]) && Number.isNaN(f16ToF32(h))), `f16 ${h.toString(16)}`);
});

for (const dtype of ['f16', 'bf16'] as FloatDType[]) {
  test(`${dtype} weights give exactly the results of the same weights converted to f32`, () => {
    const rng = Rng.fromSeed(7);
    const half = randomTensor(rng, dtype, [13, 67]);
    const wide = hostTensor('f32', half.shape, toF32(dtype, half.data));
    const vec = randomTensor(rng, dtype, [67]);
    const vecWide = hostTensor('f32', vec.shape, toF32(dtype, vec.data));
    const x = toF32('f32', randomTensor(rng, 'f32', [5, 67]).data as Float32Array);
    assert.equal(linear(x, 5, half, null), linear(x, 5, wide, null));
    const bias = hostTensor(dtype, [13], vec.data.subarray(0, 13));
    assert.equal(linear(x, 5, half, bias), linear(x, 5, wide, hostTensor('f32', [13], vecWide.data.subarray(0, 13))));
    assert.equal(embedding(Int32Array.of(12, 0, 5), half, 'e', 0, 0.5), embedding(Int32Array.of(12, 0, 5), wide, 'e', 0, 0.5));
    assert.equal(rmsNorm(x, 67, vec, 1e-6), rmsNorm(x, 67, vecWide, 1e-6));
    assert.equal(layerNorm(x, 67, vec, vec, 1e-5), layerNorm(x, 67, vecWide, vecWide, 1e-5));
  });
}

test('f16 and bf16 weights that represent a value exactly give exactly that value', () => {
  for (const v of [0.5, -1.25, 3, 1024, -0.0078125]) {
    assert.equal(Array.from(linear(f32([1]), 1, hostTensor('f16', [1, 1], Uint16Array.of(f32ToF16(v))), null)), [v]);
    assert.equal(Array.from(linear(f32([1]), 1, hostTensor('bf16', [1, 1], Uint16Array.of(f32ToBf16(v))), null)), [v]);
  }
});

test('a whole bf16 model gives the logits of the same model in f32', async () => {
  const rng = () => Rng.fromSeed(3);
  const half = tinyLlama(rng(), undefined, 'bf16');
  const wide = new Map([...half.tensors].map(([n, t]) => [n, hostTensor('f32', t.shape, toF32(t.dtype, t.data))]));
  const batch = stepBatch([{ tokens: [1, 5, 9, 2], cached: 0, blocks: [0] }], 4, 'all');
  const run = async (tensors: Map<string, HostTensor>) => {
    const p = await backend.compile(half.graph, memoryWeights(tensors), { kvCache: { numBlocks: 1, blockSize: 4 } });
    const out = await p.run(batch);
    await p.dispose();
    return out;
  };
  assert.equal(await run(half.tensors), await run(wide));
});

// ---------------------------------------------------------------------------------------------------
// Backend surface and errors

const kv1 = { kvCache: { numBlocks: 2, blockSize: 4 } };

function linearGraph(): { graph: Graph; tensors: Map<string, HostTensor> } {
  const tensors = new Map([['emb', t32([4, 3], new Array(12).fill(1))], ['w', t32([2, 3], [1, 2, 3, 4, 5, 6])]]);
  const b = new GraphBuilder(weightInfos(tensors), { layers: 1, kvHeads: 1, headDim: 3 });
  const x = b.embedding(b.inputs.tokenIds, 'emb');
  const a = b.attention(x, x, x, { layer: 0, heads: 1, kvHeads: 1, headDim: 3, scale: 1, slidingWindow: null });
  return { graph: b.build(b.linear(a, 'w')), tensors };
}

test('probe, supports and kvBytesPerBlock', async () => {
  const info = await backend.probe();
  assert.is(info?.device, 'cpu');
  assert.ok(info!.memoryBytes > 0 && info!.description.length > 0);
  const { graph } = tinyLlama(Rng.fromSeed(1));
  assert.is(backend.kvBytesPerBlock(graph, 16), 2 * 2 * 16 * 2 * 8 * 4);
  for (const n of graph.nodes) assert.ok(backend.supports(n));
  assert.not.ok(backend.supports({ op: 'activation', inputs: { x: 0 }, attrs: { fn: JSON.parse('"swish"') as ActivationFn }, output: 1 }));
});

test('compile names a weight of the wrong shape, a missing KV layer, an unsupported node and a bad cache size', async () => {
  const { graph, tensors } = linearGraph();
  const wrong = new Map([...tensors, ['w', t32([3, 2], [1, 2, 3, 4, 5, 6])]]);
  await rejects(backend.compile(graph, memoryWeights(wrong), kv1), /weight w has the wrong shape \(tensor w; expected \[2, 3\]; found \[3, 2\]\)/);
  const badStorage = new Map([...tensors, ['w', { dtype: 'bf16', shape: [2, 3], data: new Float32Array(6) } as HostTensor]]);
  await rejects(backend.compile(graph, memoryWeights(badStorage), kv1), /weight w has dtype bf16 with Float32Array storage/);
  await rejects(backend.compile({ ...graph, kv: { ...graph.kv, layers: 0 } }, memoryWeights(tensors), kv1), /attention node 1 \(layer 0\) has no KV-cache layer/);
  await rejects(backend.compile({ ...graph, kv: { ...graph.kv, headDim: 4 } }, memoryWeights(tensors), kv1), /disagrees with the graph's KV layout/);
  const swish = { ...graph, nodes: [...graph.nodes, { op: 'activation', inputs: { x: 2 }, attrs: { fn: JSON.parse('"swish"') as ActivationFn }, output: 3 } as const] };
  await rejects(backend.compile(swish, memoryWeights(tensors), kv1), /does not support op activation \(node 3\)/);
  await rejects(backend.compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 0, blockSize: 4 } }), /field kvCache.numBlocks/);
});

test('run validates the batch and names the field', async () => {
  const { graph, tensors } = linearGraph();
  const p = await backend.compile(graph, memoryWeights(tensors), kv1);
  const ok = stepBatch([{ tokens: [0, 1, 2], cached: 0, blocks: [1] }], 4);
  assert.is((await p.run(ok)).length, 3 * 2); // a 'tokens' output: every row
  await rejects(p.run({ ...ok, slots: Int32Array.of(4, 5, 8) }), /a KV slot is outside the cache \(field batch.slots\[2\]; expected a slot in \[0, 8\); found 8\)/);
  await rejects(p.run({ ...ok, positions: Int32Array.of(0) }), /field batch.positions/);
  await rejects(p.run({ ...ok, selectedRows: Int32Array.of(3) }), /field batch.selectedRows\[0\]/);
  await rejects(p.run({ ...ok, sequences: [{ ...ok.sequences[0], blockTable: Int32Array.of(2) }] }), /batch.sequences\[0\].blockTable\[0\]/);
  await rejects(p.run({ ...ok, sequences: [{ ...ok.sequences[0], queryLength: 2 }] }), /row 2 belongs to no sequence/);
  await rejects(p.run({ ...ok, sequences: [{ ...ok.sequences[0], contextLength: 5 }] }), /a block table is too short/);
  await p.dispose();
  await rejects(p.run(ok), /reference program was disposed/);
});

test.run();
