// The CUDA backend's communication nodes without a GPU: a tensor-parallel rank graph (vocab-sharded
// embedding, row-parallel all-reduces, all-gathered LM head) and a pipeline stage (recv in, send out)
// compile on the recording Gpu with fake device collectives, which record every NCCL call the program
// enqueues: counts, dtypes, the stream, and that the buffers handed over are the values' own (the recorder
// checks each range lies in a live allocation). Decode steps capture the collectives in the CUDA graph and
// replay them without calling NCCL again.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { BackendError, GraphBuilder, Rng, type Communicator, type DeviceCollectives, type FloatDType, type Graph, type HostTensor, type OpNode } from '@zinfer/core';
import { memoryWeights, randomTensor, range, stepBatch, weightInfos } from '@zinfer/core/testing';
import { cudaBackend } from '../src/cuda.js';
import { compileProgram, type CompileSettings } from '../src/cuda/compile.js';
import { RecordingGpu } from '../src/cuda/recording-gpu.js';

const SETTINGS: CompileSettings = {
  activations: 'f32', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};
const [VOCAB, HIDDEN, HEADS, HEAD_DIM, INTER, RANKS] = [64, 32, 2, 8, 24, 2]; // one rank's share: 2 of 4 heads, 24 of 48
const KV = { numBlocks: 6, blockSize: 4 };

interface Call {
  op: 'allReduce' | 'allGather' | 'send' | 'recv';
  ptrs: bigint[];
  count: number;
  dtype: FloatDType;
  peer?: number;
  stream: bigint;
}

/** Device collectives that record each call, as the program enqueues it. */
function fakeCollectives(calls: Call[]): DeviceCollectives {
  return {
    library: 'fake',
    allReduce: (send, recv, count, dtype, stream) => void calls.push({ op: 'allReduce', ptrs: [send, recv], count, dtype, stream }),
    allGather: (send, recv, count, dtype, stream) => void calls.push({ op: 'allGather', ptrs: [send, recv], count, dtype, stream }),
    send: (buf, count, dtype, peer, stream) => void calls.push({ op: 'send', ptrs: [buf], count, dtype, peer, stream }),
    recv: (buf, count, dtype, peer, stream) => void calls.push({ op: 'recv', ptrs: [buf], count, dtype, peer, stream }),
  };
}

function communicator(rank: number, size: number, device?: DeviceCollectives): Communicator {
  const host = () => Promise.reject(new Error('host collectives are not used by the cuda backend'));
  return { rank, size, allReduce: host, allGather: host, allToAll: host, send: host, recv: host, close: async () => {}, ...(device ? { device } : {}) };
}

/** Rank 1 of a 2-way tensor-parallel one-layer Llama, as planTensorParallel lays it out. */
function tensorRank(dtype: FloatDType): { graph: Graph; tensors: Map<string, HostTensor> } {
  const rng = Rng.fromSeed(11);
  const t = new Map<string, HostTensor>();
  const mat = (name: string, rows: number, cols: number) => t.set(name, randomTensor(rng, dtype, [rows, cols], 1 / Math.sqrt(cols)));
  mat('embed', VOCAB / RANKS, HIDDEN);
  t.set('norm', randomTensor(rng, dtype, [HIDDEN], 0.1, 1));
  mat('q', HEADS * HEAD_DIM, HIDDEN);
  mat('k', HEAD_DIM, HIDDEN);
  mat('v', HEAD_DIM, HIDDEN);
  mat('o', HIDDEN, HEADS * HEAD_DIM);
  mat('gate', INTER, HIDDEN);
  mat('up', INTER, HIDDEN);
  mat('down', HIDDEN, INTER);
  t.set('final_norm', randomTensor(rng, dtype, [HIDDEN], 0.1, 1));
  mat('lm_head', VOCAB / RANKS, HIDDEN);
  const b = new GraphBuilder(weightInfos(t), { layers: 1, kvHeads: 1, headDim: HEAD_DIM });
  const rope = { heads: HEADS, headDim: HEAD_DIM, rotaryDim: HEAD_DIM, invFreq: range(HEAD_DIM / 2).map((i) => 1 / 10000 ** ((2 * i) / HEAD_DIM)), attentionScaling: 1, interleaved: false };
  const x = b.allReduce(b.embedding(b.inputs.tokenIds, 'embed', { vocabShardStart: VOCAB / RANKS }));
  const h = b.rmsNorm(x, 'norm', 1e-6);
  const q = b.rotary(b.linear(h, 'q'), rope);
  const k = b.rotary(b.linear(h, 'k'), { ...rope, heads: 1 });
  const a = b.attention(q, k, b.linear(h, 'v'), { layer: 0, heads: HEADS, kvHeads: 1, headDim: HEAD_DIM, scale: 1 / Math.sqrt(HEAD_DIM), slidingWindow: null });
  const x2 = b.add(x, b.allReduce(b.linear(a, 'o')));
  const h2 = b.rmsNorm(x2, 'norm', 1e-6);
  const mlp = b.linear(b.gatedActivation(b.linear(h2, 'gate'), b.linear(h2, 'up'), 'silu'), 'down');
  const x3 = b.add(x2, b.allReduce(mlp));
  const logits = b.linear(b.gatherRows(b.rmsNorm(x3, 'final_norm', 1e-6)), 'lm_head');
  return { graph: b.build(b.allGather(logits, RANKS)), tensors: t };
}

/** The middle stage of a pipeline: the residual stream comes from stage 0 and goes on to stage 2. */
function middleStage(dtype: FloatDType): { graph: Graph; tensors: Map<string, HostTensor> } {
  const { graph, tensors } = tensorRank(dtype);
  tensors.delete('embed');
  const nodes = graph.nodes.slice(2, graph.nodes.findIndex((n) => n.op === 'gatherRows') - 1); // after the embedding's all-reduce, up to the final norm
  const first = graph.nodes[1].output; // the stream the layer reads
  const values = [...graph.values];
  const sent = values.length;
  values.push({ id: sent, kind: 'float', width: HIDDEN, rows: 'tokens' });
  const last = nodes[nodes.length - 1].output;
  const recv: OpNode = { op: 'recv', inputs: { ids: graph.inputs.tokenIds }, attrs: { peer: 0, width: HIDDEN }, output: first };
  const send: OpNode = { op: 'send', inputs: { x: last }, attrs: { peer: 2 }, output: sent };
  const weights = new Map([...graph.weights].filter(([name]) => name !== 'embed' && name !== 'lm_head' && name !== 'final_norm'));
  tensors.delete('lm_head');
  tensors.delete('final_norm');
  return { graph: { ...graph, nodes: [recv, ...nodes, send], values, output: sent, weights }, tensors };
}

const prompt = () => stepBatch([{ tokens: [5, 40, 63], cached: 0, blocks: [0, 1] }], KV.blockSize, 'all');
const decode = (t: number) => stepBatch([{ tokens: [t], cached: 3 + t, blocks: [0, 1] }], KV.blockSize, 'last');

test('tensor-parallel rank: all-reduces and the LM head all-gather go to NCCL on the program stream, in the activation dtype, logits in f32', async () => {
  for (const act of ['f32', 'bf16'] as const) {
    const gpu = new RecordingGpu();
    const calls: Call[] = [];
    const { graph, tensors } = tensorRank(act);
    const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: KV, communicator: communicator(1, RANKS, fakeCollectives(calls)) }, { ...SETTINGS, activations: 'auto' });
    const from = gpu.launches.length;
    const out = await program.run(prompt());
    assert.is(out.length, 3 * VOCAB);
    assert.equal(calls.map((c) => c.op), ['allReduce', 'allReduce', 'allReduce', 'allGather'], act);
    for (const c of calls.slice(0, 3)) {
      assert.is(c.count, 3 * HIDDEN, 'all-reduce: every row of the hidden state');
      assert.is(c.dtype, act, 'all-reduce in the activation dtype');
      assert.ok(c.ptrs[0] !== c.ptrs[1], 'out of place: the input value stays for the residual');
    }
    const gather = calls[3];
    assert.is(gather.count, 3 * (VOCAB / RANKS), 'all-gather: this rank\'s logits of the selected rows');
    assert.is(gather.dtype, 'f32', 'logits stay f32 through the all-gather');
    assert.ok(calls.every((c) => c.stream === gpu.stream), 'enqueued on the program stream');
    const interleave = gpu.launches.slice(from).find((l) => l.kernel.startsWith('interleave_ranks_'))!;
    assert.is(interleave.kernel, 'interleave_ranks_f32');
    assert.equal(interleave.args.slice(1), [gather.ptrs[1], 3, VOCAB / RANKS, RANKS], '[ranks, rows, width] → [rows, ranks · width]');
    const embed = gpu.launches.slice(from).find((l) => l.kernel.startsWith('embedding_'))!;
    assert.equal(embed.args.slice(6), [VOCAB / RANKS, VOCAB / RANKS], 'the shard start and rows reach the kernel');
    const lmHead = gpu.launches.slice(from).filter((l) => /^gemv\d[a-z]?_/.test(l.kernel)).at(-1)!; // 3 rows: GEMVs
    assert.is(lmHead.args[22], 1, 'the LM head writes f32');
    assert.is(lmHead.args[0], gather.ptrs[0], 'and the all-gather sends what it wrote');
    assert.equal(gpu.externals.map((x) => x.what.split(' ')[0]), ['allReduce', 'allReduce', 'allReduce', 'allGather']);
    await program.dispose();
    assert.is(gpu.live.size, 0);
  }
});

test('decode steps: the collectives are captured in the CUDA graph and replayed without calling NCCL again; one row needs no interleave', async () => {
  const gpu = new RecordingGpu();
  const calls: Call[] = [];
  const { graph, tensors } = tensorRank('f16');
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: KV, communicator: communicator(1, RANKS, fakeCollectives(calls)) }, { ...SETTINGS, activations: 'auto' });
  await program.run(prompt());
  const perStep = 4;
  for (let t = 0; t < 4; t++) {
    const [callsBefore, externalsBefore, launchesBefore] = [calls.length, gpu.externals.length, gpu.launches.length];
    await program.run(decode(t));
    const externals = gpu.externals.slice(externalsBefore);
    assert.is(externals.length, perStep, `step ${t}: every collective on the stream`);
    assert.is(calls.length - callsBefore, t <= 1 ? perStep : 0, `step ${t}: NCCL called when eager (0) and capturing (1), not on replays`);
    assert.ok(externals.every((x) => !!x.replay === t >= 1), `step ${t}: ${t >= 1 ? 'replayed (step 1 captures, then launches its graph)' : 'eager'}`);
    assert.not.ok(gpu.launches.slice(launchesBefore).some((l) => l.kernel.startsWith('interleave_ranks_')), 'one row: gathered in place');
  }
  const gather = calls.at(-1)!;
  assert.is(gather.op, 'allGather');
  assert.is(gather.count, VOCAB / RANKS);
  assert.is(program.stats.graphCaptures, 1);
  assert.is(program.stats.graphError, null);
  await program.dispose();
  assert.is(gpu.graphStats.live, 0);
  assert.is(gpu.live.size, 0);
});

test('pipeline stage: recv fills the stream from the stage before, send passes it on (and copies it to the stage output)', async () => {
  const gpu = new RecordingGpu();
  const calls: Call[] = [];
  const { graph, tensors } = middleStage('bf16');
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: KV, communicator: communicator(1, RANKS, fakeCollectives(calls)), pipeline: communicator(1, 3, fakeCollectives(calls)) }, { ...SETTINGS, activations: 'auto' });
  const from = gpu.launches.length;
  const out = await program.run(prompt());
  assert.is(out.length, 3 * HIDDEN);
  assert.equal(calls.map((c) => c.op), ['recv', 'allReduce', 'allReduce', 'send']);
  const [recv, send] = [calls[0], calls[3]];
  assert.equal([recv.count, recv.dtype, recv.peer], [3 * HIDDEN, 'bf16', 0]);
  assert.equal([send.count, send.dtype, send.peer], [3 * HIDDEN, 'bf16', 2]);
  const copy = gpu.launches.slice(from).find((l) => l.kernel === 'copy_bf16')!;
  assert.is(copy.args[1], send.ptrs[0], 'the output value is a copy of what was sent');
  assert.is(copy.args[2], 3 * HIDDEN);
  assert.is(gpu.launches.slice(from).filter((l) => l.kernel.startsWith('embedding_')).length, 0);
  await program.dispose();
  assert.is(gpu.live.size, 0);
});

test('communication nodes with a host-only communicator, or none, are refused before anything is allocated', async () => {
  const { graph, tensors } = tensorRank('f32');
  for (const [comm, found] of [[communicator(0, RANKS), 'host-only'], [undefined, 'none']] as const) {
    const gpu = new RecordingGpu();
    try {
      await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: KV, ...(comm ? { communicator: comm } : {}) }, SETTINGS);
      assert.unreachable('expected a refusal');
    } catch (e) {
      assert.instance(e, BackendError);
      assert.is((e as BackendError).info.field, 'communicator.device');
      assert.match((e as Error).message, 'device collectives');
      assert.match((e as BackendError).info.found ?? '', found);
    }
    assert.is(gpu.live.size, 0);
  }
});

test('a sharded embedding takes ids outside its shard (they are zero rows there), and the backend declares NCCL ranks', async () => {
  const gpu = new RecordingGpu();
  const { graph, tensors } = tensorRank('f32');
  const program = await compileProgram(gpu, graph, memoryWeights(tensors), { kvCache: KV, communicator: communicator(1, RANKS, fakeCollectives([])) }, SETTINGS);
  await program.run(stepBatch([{ tokens: [0, 1, 2], cached: 0, blocks: [0, 1] }], KV.blockSize, 'last')); // all in rank 0's shard
  await program.dispose();
  const backend = cudaBackend({ activations: 'f16', device: 1 });
  assert.is(backend.deviceCollectives, 'nccl');
  assert.equal(backend.factory, { module: '@zinfer/kernels/cuda', exportName: 'cudaBackend', options: { activations: 'f16', device: 1 } });
  assert.ok(backend.supports(graph.nodes.find((n) => n.op === 'allGather')!));
});

test("kvBytesPerBlock with activations 'auto' follows the stored dtype the weight source reports", () => {
  const { graph, tensors } = tensorRank('bf16');
  const perElement = 2 * graph.kv.layers * 16 * graph.kv.kvHeads * graph.kv.headDim;
  const source = { ...memoryWeights(tensors), dtypeOf: (name: string) => tensors.get(name)!.dtype };
  assert.is(cudaBackend().kvBytesPerBlock(graph, 16, source), perElement * 2, 'bf16 matrices: a 2-byte cache');
  assert.is(cudaBackend().kvBytesPerBlock(graph, 16), perElement * 4, 'unknown: f32 sizes');
  assert.is(cudaBackend({ activations: 'f32' }).kvBytesPerBlock(graph, 16, source), perElement * 4);
  const f32 = tensorRank('f32');
  assert.is(cudaBackend().kvBytesPerBlock(f32.graph, 16, { ...memoryWeights(f32.tensors), dtypeOf: () => 'f32' }), perElement * 4);
});

test.run();
