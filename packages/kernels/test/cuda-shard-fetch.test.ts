// The cooperative fetch on the CUDA backend, without a GPU (recording Gpu): with a stream whose shard says
// "rank 1 of 2", each group is one copy of the rank's run of the image into its place in the slot, then an
// in-place all-gather over the device collectives (send = the run, recv = the slot) on the gather stream
// (or the copy stream with ZINFER_SHARD_GATHER=copy), after the run landed; kernels read the weights at
// the image's offsets. Images the program cannot compute from are refused naming the weight.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Rng, type Communicator, type DeviceCollectives, type FloatDType, type HostTensor, type ShardImage, type WeightStream } from '@zinfer/core';
import { memoryWeights, memoryWeightStream, stepBatch, tinyLlama } from '@zinfer/core/testing';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import { HostMemory } from '../src/cuda/host-memory.js';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';
import { rejects } from './helpers/rejects.js';

const SETTINGS: CompileSettings = {
  activations: 'f32', cublas: false, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};
const CFG = { vocabSize: 61, hiddenSize: 32, numHeads: 4, numKeyValueHeads: 2, headDim: 8, intermediateSize: 48, numLayers: 3, slidingWindow: null };
const KV = { numBlocks: 8, blockSize: 4 };
const PROMPT = stepBatch([{ tokens: [3, 9, 14, 2, 7], cached: 0, blocks: [0, 1] }], KV.blockSize, 'last');
const SIZE = 2;
const RANK = 1;

interface Gather {
  send: bigint;
  recv: bigint;
  count: number;
  dtype: FloatDType;
  stream: bigint;
}

/** Images as the offload package lays them out (256-byte aligned, padded to SIZE × 4096); shares pinned. */
function shardedStream(tensors: Map<string, HostTensor>, base: WeightStream, host: HostMemory, gathers: Gather[] | null, dtypeOf = (t: HostTensor) => t.dtype): WeightStream {
  const images: ShardImage[] = base.groups.map((names) => {
    let offset = 0;
    const entries = names.map((name) => {
      const t = tensors.get(name)!;
      const e = { name, dtype: dtypeOf(t), shape: t.shape, offset, bytes: t.data.byteLength };
      offset = Math.ceil((offset + e.bytes) / 256) * 256;
      return e;
    });
    return { entries, bytes: Math.ceil(offset / (SIZE * 4096)) * SIZE * 4096 };
  });
  const device: DeviceCollectives = {
    library: 'recording',
    allGather: (send, recv, count, dtype, stream) => void gathers!.push({ send, recv, count, dtype, stream }),
    allReduce: () => {}, send: () => {}, recv: () => {},
  };
  const communicator = { rank: RANK, size: SIZE, ...(gathers ? { device } : {}) } as unknown as Communicator;
  return {
    ...base,
    shard: {
      rank: RANK, size: SIZE, communicator,
      image: (g) => images[g],
      acquireShare: async (g) => {
        await base.acquire(g); // the contract's bookkeeping (order, held once)
        const run = images[g].bytes / SIZE;
        const share = new Uint8Array(host.alloc(run));
        share.fill(g + 1);
        return share;
      },
    },
  };
}

async function setup(opts: { gathers: Gather[] | null; dtypeOf?: (t: HostTensor) => FloatDType }) {
  const gpu = new RecordingGpu({ cublas: false });
  const host = new HostMemory(gpu.copies.pinned);
  const { graph, tensors } = tinyLlama(Rng.fromSeed(7), CFG, 'f32');
  const base = memoryWeightStream(graph, memoryWeights(tensors), { prefetch: 1 });
  const stream = shardedStream(tensors, base, host, opts.gathers, opts.dtypeOf);
  const compile = () => compileProgram(gpu, graph, base.resident, { kvCache: KV, stream }, { ...SETTINGS, host });
  return { gpu, stream, compile };
}

for (const queue of ['gather', 'copy'] as const) {
  test(`each group: the rank's run copied into its place in the slot, then an in-place all-gather on the ${queue} stream`, async () => {
    const before = process.env.ZINFER_SHARD_GATHER;
    process.env.ZINFER_SHARD_GATHER = queue;
    try {
      const gathers: Gather[] = [];
      const { gpu, stream, compile } = await setup({ gathers });
      const program = await compile();
      await program.run(PROMPT);
      const copies = gpu.copies.log.filter((o) => o.op === 'copy');
      assert.is(copies.length, stream.groups.length, 'one copy per group: the rank run');
      assert.is(gathers.length, stream.groups.length, 'one all-gather per group');
      copies.forEach((c, g) => {
        const run = stream.shard!.image(g).bytes / SIZE;
        assert.is(c.bytes, run);
        assert.ok(c.data.every((b) => b === g + 1), `group ${g}: the rank's share bytes`);
        assert.is(gathers[g].send, c.dst, 'the all-gather sends the run where it landed');
        assert.is(gathers[g].recv, c.dst - BigInt(RANK * run), 'and gathers into the slot from its start');
        assert.is(gathers[g].count, run / 4);
        assert.is(gathers[g].dtype, 'f32');
        assert.is(gathers[g].stream, queue === 'gather' ? 3n : 2n);
      });
      const gatherWaits = gpu.copies.log.filter((o) => o.op === 'wait' && o.queue === 'gather').length;
      assert.is(gatherWaits, queue === 'gather' ? stream.groups.length : 0, 'the gather stream waits for each run');
      assert.is(program.streamStats!.gatheredBytes, stream.groups.reduce((a, _, g) => a + stream.shard!.image(g).bytes / 2, 0));
      await program.dispose();
    } finally {
      if (before === undefined) delete process.env.ZINFER_SHARD_GATHER;
      else process.env.ZINFER_SHARD_GATHER = before;
    }
  });
}

test('refused: a communicator without device collectives; an image whose dtype is not the planned one (naming the weight)', async () => {
  await rejects((await setup({ gathers: null })).compile(), /needs device collectives/);
  const wrong = await setup({ gathers: [], dtypeOf: (t) => (t.shape.length === 2 ? 'f16' : t.dtype) });
  await rejects(wrong.compile(), /weight model\.layers\.0\.\S+ is f16 .*computes with f32/);
});

test.run();
