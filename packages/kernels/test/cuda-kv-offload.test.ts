// KV-cache offload in the CUDA backend (Program.kvBlocks), without a GPU: a program on the recording Gpu
// saves and loads blocks through its copy engine. Checked: every copy is on the copy stream after a wait
// for an event recorded on the compute stream when the transfer was called (so a save reads what the
// steps before it wrote, and a load overwrites only after them), the transfer's "copy done" event is
// recorded after its copies and its promise resolves only once that event completed; byte ranges match
// the cache the kernels address (each layer's K and V pointers as rope_kv gets them) and the host store's
// block-major layout, for f16 and fp8 (e4m3) caches; errors name the block or the store.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, Rng, type KvBlockTransfer } from '@zinfer/core';
import { memoryWeights, stepBatch, tinyLlama, TINY_LLAMA, type TinyLlamaConfig } from '@zinfer/core/testing';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import { HostMemory } from '../src/cuda/host-memory.js';
import type { CopyOp } from '../src/cuda/recording-copies.js';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';

const CFG: TinyLlamaConfig = { ...TINY_LLAMA, headDim: 16, numLayers: 3 };
const SETTINGS: CompileSettings = {
  activations: 'f16', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};
const KV = { numBlocks: 6, blockSize: 4 };

async function setup(fp8: boolean) {
  const gpu = new RecordingGpu();
  const host = new HostMemory(gpu.copies.pinned);
  const m = tinyLlama(Rng.fromSeed(3), CFG, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: { ...KV, ...(fp8 ? { dtype: 'fp8' as const } : {}) } }, { ...SETTINGS, pinned: () => host });
  return { gpu, host, program, kv: program.kvBlocks! };
}

/** Each layer's K and V cache pointers, as the rope_kv launches of a step get them. */
function cachePointers(gpu: RecordingGpu): { k: bigint; v: bigint }[] {
  return gpu.launches.filter((l) => l.kernel.startsWith('rope_kv_')).map((l) => ({ k: l.args[1] as bigint, v: l.args[2] as bigint }));
}

type Copy = Extract<CopyOp, { op: 'copy' }>;

/** The log entries of one transfer: record on compute, wait on copy, the copies, record "done" on copy. */
function transferLog(log: readonly CopyOp[], from: number): { after: CopyOp; wait: CopyOp; copies: Copy[]; done: CopyOp } {
  const part = log.slice(from);
  const [after, wait, ...rest] = part;
  return { after, wait, copies: rest.slice(0, -1) as Copy[], done: rest[rest.length - 1] };
}

for (const fp8 of [false, true]) {
  const dtype = fp8 ? 'fp8 e4m3' : 'f16';
  test(`${dtype} cache: saves and loads run on the copy stream after the compute stream's steps, with the kernels' byte ranges`, async () => {
    const { gpu, host, program, kv } = await setup(fp8);
    const blockLayerBytes = KV.blockSize * CFG.numKeyValueHeads * CFG.headDim * (fp8 ? 1 : 2);
    assert.is(kv.blockBytes, 2 * CFG.numLayers * blockLayerBytes);
    const store = kv.allocHost(5);
    assert.is(store.byteLength, 5 * kv.blockBytes);
    const base = host.address(new Uint8Array(store))!;
    await program.run(stepBatch([{ tokens: [3, 9, 14, 2, 7], cached: 0, blocks: [1, 2] }], KV.blockSize, 'last'));
    const ptrs = cachePointers(gpu);
    assert.is(ptrs.length, CFG.numLayers);
    assert.ok(gpu.launches.some((l) => l.kernel === `rope_kv_f16${fp8 ? '_e4m3' : ''}`), 'the cache dtype is the one asked');
    const part = (p: number) => (p % 2 === 0 ? ptrs[p >> 1].k : ptrs[p >> 1].v);

    // Save device blocks 1 and 2 into host blocks 4 and 0.
    const stepLaunches = gpu.launches.length;
    const from = gpu.copies.log.length;
    const events = gpu.copies.liveEvents;
    await kv.save(Int32Array.of(1, 2), store, Int32Array.of(4, 0));
    const s = transferLog(gpu.copies.log, from);
    assert.equal([s.after.op, (s.after as { queue: string }).queue, s.after.launches], ['record', 'compute', stepLaunches], 'the event marks the end of the step that wrote the blocks');
    assert.equal([s.wait.op, (s.wait as { queue: string }).queue, (s.wait as { event: bigint }).event], ['wait', 'copy', (s.after as { event: bigint }).event], 'the copy stream waits for it');
    assert.equal([s.done.op, (s.done as { queue: string }).queue], ['record', 'copy']);
    assert.is(s.copies.length, 2 * 2 * CFG.numLayers);
    let i = 0;
    for (const [d, h] of [[1, 4], [2, 0]]) {
      for (let p = 0; p < 2 * CFG.numLayers; p++, i++) {
        const c = s.copies[i];
        assert.ok(c.toHost, 'device → host');
        assert.is(c.bytes, blockLayerBytes);
        assert.is(c.src, part(p) + BigInt(d * blockLayerBytes), `block ${d} part ${p}: the cache row the kernels address`);
        assert.is(c.dst, base + BigInt(h * kv.blockBytes + p * blockLayerBytes), `host block ${h} part ${p}`);
      }
    }
    assert.is(gpu.copies.liveEvents, events, 'the transfer destroys its events');

    // Load host block 4 into device block 5 (its bytes are what the host store holds).
    new Uint8Array(store).forEach((_, j, a) => (a[j] = j % 251));
    const before = gpu.copies.log.length;
    await kv.load(Int32Array.of(4), store, Int32Array.of(5));
    const l = transferLog(gpu.copies.log, before);
    assert.equal([l.after.op, (l.after as { queue: string }).queue, l.wait.op, (l.wait as { queue: string }).queue], ['record', 'compute', 'wait', 'copy']);
    assert.is(l.copies.length, 2 * CFG.numLayers);
    l.copies.forEach((c, p) => {
      assert.not.ok(c.toHost);
      assert.is(c.dst, part(p) + BigInt(5 * blockLayerBytes));
      assert.is(c.src, base + BigInt(4 * kv.blockBytes + p * blockLayerBytes));
      assert.equal(Array.from(c.data), Array.from(new Uint8Array(store, 4 * kv.blockBytes + p * blockLayerBytes, blockLayerBytes)));
    });
    // The next step, run after the load resolved, launches after the load's "done" record.
    await program.run(stepBatch([{ tokens: [4], cached: 5, blocks: [5, 2] }], KV.blockSize, 'last'));
    assert.ok(l.done.launches < gpu.launches.length);
    kv.freeHost(store);
    await program.dispose();
  });
}

test('a transfer resolves only once its "copy done" event completed (polled)', async () => {
  const { gpu, program, kv } = await setup(false);
  const store = kv.allocHost(2);
  gpu.copies.pollsBeforeDone = 3;
  let settled = false;
  const saving = kv.save(Int32Array.of(0), store, Int32Array.of(1)).then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.not.ok(settled, 'not done after one turn: the event answered "not ready"');
  await saving;
  assert.ok(settled);
  await program.dispose();
});

test('errors name the block outside the cache or the store, and a store not from allocHost', async () => {
  const { program, kv } = await setup(false);
  const store = kv.allocHost(2);
  const field = (p: Promise<void>) => p.then(() => 'resolved', (e: unknown) => (e instanceof BackendError ? e.info.field : String(e)));
  assert.is(await field(kv.save(Int32Array.of(KV.numBlocks), store, Int32Array.of(0))), 'deviceBlocks[0]', 'the scratch block and beyond are not the caller\'s');
  assert.is(await field(kv.load(Int32Array.of(2), store, Int32Array.of(0))), 'hostBlocks[0]');
  assert.is(await field(kv.save(Int32Array.of(0), new ArrayBuffer(kv.blockBytes), Int32Array.of(0))), 'store');
  await program.dispose();
});

test('no kvBlocks without pinned host memory (a program compiled outside the backend)', async () => {
  const gpu = new RecordingGpu();
  const m = tinyLlama(Rng.fromSeed(3), CFG, 'f16');
  const program = await compileProgram(gpu, m.graph, memoryWeights(m.tensors), { kvCache: KV }, SETTINGS);
  const kv: KvBlockTransfer | undefined = program.kvBlocks;
  assert.is(kv, undefined);
  await program.dispose();
});

test.run();
