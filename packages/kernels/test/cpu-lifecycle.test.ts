// The cpu backend's lifecycle and errors: the graph rewrite, dispose, a clean process exit with and
// without dispose, the 4 GiB limit, and errors that name what to fix.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from './helpers/rejects.js';
import { GraphBuilder, Rng, type Graph, type OpNode } from '@zinfer/core';
import { expectClose, memoryWeights, randomTensor, stepBatch, tinyLlama, weightInfos } from '@zinfer/core/testing';
import { referenceBackend } from '../src/reference.js';
import { cpuBackend, defaultCpuThreads, MAX_DEFAULT_CPU_THREADS } from '../src/cpu.js';
import { fuseGraph } from '../src/cpu/fuse.js';
import { WasmHeap } from '../src/cpu/heap.js';

const built = spawnSync(process.execPath, [join(import.meta.dirname, '../scripts/build-wasm.mjs')], { encoding: 'utf8' });
if (built.status !== 0) throw new Error(`building the cpu kernels failed:\n${built.stderr}`);

test('the rewrite fuses a Llama layer into 4 linear kernels: q/k/v, o + residual, gate/up + silu, down + residual', () => {
  const { graph } = tinyLlama(Rng.fromSeed(1));
  const nodes = fuseGraph(graph, () => 'bf16');
  const groups = nodes.filter((n) => n.op === 'linearGroup');
  assert.is(groups.length, 2 * 4 + 1); // + lm_head
  assert.equal(groups.slice(0, 4).map((g) => (g.op === 'linearGroup' ? [g.parts.length, g.gated, g.parts.map((p) => p.residual !== null)] : [])), [
    [3, null, [false, false, false]], [1, null, [true]], [2, 'silu', [false, false]], [1, null, [true]],
  ]);
  assert.equal([...new Set(nodes.map((n) => n.op))].sort(), ['attention', 'embedding', 'gatherRows', 'linearGroup', 'rmsNorm', 'rotary']);
  // Without fusing, every linear is its own kernel.
  assert.is(fuseGraph(graph, () => 'bf16', { fuse: false }).filter((n) => n.op === 'linearGroup').length, 2 * 7 + 1);
  // q/k/v with different weight dtypes are not grouped.
  const mixed = fuseGraph(graph, (w) => (w.endsWith('.k') ? 'f32' : 'bf16'));
  assert.is(mixed.filter((n) => n.op === 'linearGroup').length, 2 * 5 + 1);
});

test('fused and unfused programs agree', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(2), undefined, 'bf16');
  const batch = stepBatch([{ tokens: [1, 2, 3, 4, 5], cached: 0, blocks: [0] }], 16, 'all');
  const run = async (fuse: boolean) => {
    const p = await cpuBackend({ threads: 2, fuse }).compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 1, blockSize: 16 } });
    const out = await p.run(batch);
    await p.dispose();
    return out;
  };
  const [a, b] = [await run(true), await run(false)];
  let worst = 0;
  a.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[i]))));
  assert.ok(worst < 1e-5, `fused vs unfused differ by ${worst}`);
});

test('run after dispose, embedding ids outside the table and bad batches reject with BackendErrors naming the field', async () => {
  const { graph, tensors } = tinyLlama(Rng.fromSeed(3));
  const p = await cpuBackend({ threads: 2 }).compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 2, blockSize: 4 } });
  const ok = stepBatch([{ tokens: [1, 2, 3], cached: 0, blocks: [1] }], 4);
  assert.is((await p.run(ok)).length, 61);
  await rejects(p.run({ ...ok, tokenIds: Int32Array.of(1, 99, 3) }), /token id 99 \(row 1\) is outside table embed/);
  await rejects(p.run({ ...ok, slots: Int32Array.of(4, 5, 8) }), /a KV slot is outside the cache \(field batch.slots\[2\]/);
  await rejects(p.run({ ...ok, sequences: [{ ...ok.sequences[0], contextLength: 5 }] }), /a block table is too short/);
  await p.dispose();
  await p.dispose(); // twice is fine
  await rejects(p.run(ok), /cpu program was disposed/);
});

test('communication ops run through the communicator and pipeline like on the reference backend', async () => {
  // A two-rank group simulated on one rank: allReduce doubles (both ranks hold the same x), allGather
  // repeats x, recv delivers a fixed pattern and send records what it was given.
  const sent: Float32Array[] = [];
  const comm = {
    rank: 0, size: 2,
    allReduce: async (b: Float32Array) => void b.forEach((v, i) => (b[i] = 2 * v)),
    allGather: async (send: Float32Array, recv: Float32Array) => void (recv.set(send), recv.set(send, send.length)),
    allToAll: async () => {}, recv: async (b: Float32Array) => void b.forEach((_, i) => (b[i] = i / 7)),
    send: async (b: Float32Array) => void sent.push(b.slice()), close: async () => {},
  };
  const rng = Rng.fromSeed(5);
  const tensors = new Map([['x', randomTensor(rng, 'bf16', [6, 17])], ['w', randomTensor(rng, 'bf16', [9, 17])], ['w2', randomTensor(rng, 'bf16', [5, 18])]]);
  const b = new GraphBuilder(weightInfos(tensors), { layers: 0, kvHeads: 1, headDim: 1 });
  const g = b.allGather(b.allReduce(b.linear(b.embedding(b.inputs.tokenIds, 'x'), 'w')), 2); // [T, 18]
  // GraphBuilder has no send/recv yet: append them by hand (recv → add → linear → send).
  const base = b.build(g);
  const values = [...base.values];
  const value = (width: number) => values.push({ id: values.length, kind: 'float', width, rows: 'tokens' }) - 1;
  const r = value(18);
  const sum = value(18);
  const y = value(5);
  const out = value(5);
  const nodes: OpNode[] = [
    ...base.nodes,
    { op: 'recv', inputs: { ids: base.inputs.tokenIds }, attrs: { peer: 1, width: 18 }, output: r },
    { op: 'add', inputs: { a: g, b: r }, attrs: {}, output: sum },
    { op: 'linear', inputs: { x: sum }, attrs: { weight: 'w2', bias: null }, output: y },
    { op: 'send', inputs: { x: y }, attrs: { peer: 1 }, output: out },
  ];
  const graph: Graph = { ...base, values, nodes, output: out };
  const batch = stepBatch([{ tokens: [0, 1, 2, 3, 4], cached: 0, blocks: [0] }], 16, 'all');
  const outs: Float32Array[] = [];
  for (const backend of [cpuBackend({ threads: 2, minParallelWork: 0 }), referenceBackend()]) {
    const p = await backend.compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 1, blockSize: 16 }, communicator: comm, pipeline: comm });
    outs.push(await p.run(batch));
    await p.dispose();
  }
  expectClose(outs[0], outs[1], 1e-5, 'cpu vs reference through allReduce, allGather, recv and send', 5);
  expectClose(sent[0], sent[1], 1e-5, 'what send was given');
  await rejects(cpuBackend().compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 1, blockSize: 16 } }), /has a allReduce node but no communicator was given/);
});

test('options are checked', () => {
  assert.throws(() => cpuBackend({ threads: 0 }), /thread count is not a positive integer \(field threads/);
  assert.throws(() => cpuBackend({ threads: 1.5 }), /field threads/);
  assert.throws(() => cpuBackend({ minParallelWork: -1 }), /field minParallelWork/);
  assert.throws(() => cpuBackend({ spinMs: -0.5 }), /spinMs is not a number ≥ 0 \(field spinMs/);
  assert.throws(() => cpuBackend({ spinMs: Number.NaN }), /field spinMs/);
  const before = process.env.ZINFER_CPU_SPIN_MS;
  try {
    process.env.ZINFER_CPU_SPIN_MS = 'soon';
    assert.throws(() => cpuBackend(), /ZINFER_CPU_SPIN_MS is not a number ≥ 0 \(field ZINFER_CPU_SPIN_MS/);
    assert.ok(cpuBackend({ spinMs: 0 }), 'the option wins over the environment');
    process.env.ZINFER_CPU_SPIN_MS = '1';
    assert.ok(cpuBackend());
  } finally {
    if (before === undefined) delete process.env.ZINFER_CPU_SPIN_MS;
    else process.env.ZINFER_CPU_SPIN_MS = before;
  }
});

test('memory beyond 4 GiB (wasm32) is refused with a BackendError naming what did not fit', () => {
  const heap = new WasmHeap();
  assert.throws(() => heap.alloc(5 * 2 ** 30, 'weight big.weight'), (e: Error) => e.name === 'BackendError' && /cannot hold weight big.weight: its WebAssembly memory is limited to 4 GiB/.test(e.message));
});

/** Runs a script (ESM, TypeScript imports through tsx) in a fresh node process; returns its exit and time. */
function child(body: string): { status: number | null; ms: number; stderr: string; stdout: string } {
  const src = pathToFileURL(join(import.meta.dirname, '../src/cpu.ts')).href;
  const testing = pathToFileURL(join(import.meta.dirname, '../../core/src/testing.ts')).href;
  const core = pathToFileURL(join(import.meta.dirname, '../../core/src/index.ts')).href;
  const script = `import { cpuBackend } from '${src}'; import { tinyLlama, memoryWeights, stepBatch } from '${testing}'; import { Rng } from '${core}';
const { graph, tensors } = tinyLlama(Rng.fromSeed(4));
const p = await cpuBackend({ threads: 2, minParallelWork: 0 }).compile(graph, memoryWeights(tensors), { kvCache: { numBlocks: 1, blockSize: 16 } });
const out = await p.run(stepBatch([{ tokens: [1, 2, 3], cached: 0, blocks: [0] }], 16));
console.log('ran ' + out.length);
${body}`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, ms: Date.now() - t0, stderr: r.stderr, stdout: r.stdout };
}

test('a process that disposes its program exits promptly, with its workers gone', () => {
  const r = child("await p.dispose(); console.log('disposed');");
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /ran 61\ndisposed/, JSON.stringify(r));
  assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
});

test('a process that never disposes its program still exits (the workers are unref()ed)', () => {
  const r = child("console.log('left running');");
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /left running/);
  assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
});


test('the default thread count is every core this process may use, at most 32, and the backend reports it', async () => {
  assert.is(MAX_DEFAULT_CPU_THREADS, 32);
  assert.is(defaultCpuThreads(), Math.min(availableParallelism(), 32));
  assert.match((await cpuBackend().probe())?.description ?? 'no device', `(${defaultCpuThreads()} threads,`);
  assert.match((await cpuBackend({ threads: 3 }).probe())?.description ?? 'no device', '(3 threads,');
});

test.run();
