// The CUDA all-to-all dispatch and combine without a GPU: each rank of a tp2 × ep2 Mixtral plan (plain and
// coordinated exchange) compiles on the CUDA backend's recording Gpu, whose launches are checked against
// the kernels' signatures and every pointer against live allocations; fake device collectives record the
// allToAll / allGather calls, and the ranks' calls must pair up: what rank s sends to d is what d expects
// from s, and a coordinated rank talks only to its own slice of the other groups. Decode steps replay the
// exchange inside the captured CUDA graph.
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModel, type Communicator, type DeviceCollectives } from '@zinfer/core';
import { range, stepBatch } from '@zinfer/core/testing';
import { ShardedWeights } from '@zinfer/parallel';
import { compileProgram, type CompileSettings } from '../../kernels/src/cuda/compile.js';
import { RecordingGpu } from '../../kernels/src/cuda/recording-gpu.js';
import { contiguousPlacement, planExpertParallel } from '../src/index.js';

const SETTINGS: CompileSettings = {
  activations: 'f32', cublas: true, attentionChunk: null, poison: true, graphs: true, maxGraphRows: 8, flash: true, fusion: { linear: true, rope: true },
};
const FIXTURE = join(import.meta.dirname, '../../../fixtures/moe/mixtral');

interface ExchangeCall {
  sendCounts: readonly number[];
  recvCounts: readonly number[];
}

function fakeCollectives(calls: ExchangeCall[]): DeviceCollectives {
  const none = () => {};
  return { library: 'fake', allReduce: none, allGather: none, send: none, recv: none, allToAll: (_s, _r, sendCounts, recvCounts) => void calls.push({ sendCounts: [...sendCounts], recvCounts: [...recvCounts] }) };
}

function communicator(rank: number, size: number, device: DeviceCollectives): Communicator {
  const host = () => Promise.reject(new Error('host collectives are not used by the cuda backend'));
  return { rank, size, allReduce: host, allGather: host, allToAll: host, send: host, recv: host, close: async () => {}, device };
}

for (const coordinated of [false, true]) {
  test(`tp2 × ep2 ${coordinated ? 'coordinated ' : ''}all-to-all: every rank compiles, steps and pairs its exchanges`, async () => {
    const m = await loadModel(FIXTURE);
    const plan = planExpertParallel(m.graph, { size: 4, tensor: 2, placement: contiguousPlacement(), dispatch: 'all-to-all', coordinated });
    const calls: ExchangeCall[][] = [];
    try {
      for (const [rank, r] of plan.ranks.entries()) {
        calls.push([]);
        const gpu = new RecordingGpu();
        const weights = new ShardedWeights(m.weights, r.shards, [...r.graph.weights.keys()]);
        const program = await compileProgram(gpu, r.graph, weights, { kvCache: { numBlocks: 8, blockSize: 16 }, communicator: communicator(rank, 4, fakeCollectives(calls[rank])) }, SETTINGS);
        const seqs = [[0, 1], [2, 3], [4, 5]];
        await program.run(stepBatch(seqs.map((blocks, i) => ({ tokens: range(19).map((t) => (t * 7 + i) % 50), cached: 0, blocks })), 16, 'last'));
        for (let t = 0; t < 3; t++) await program.run(stepBatch(seqs.map((blocks, i) => ({ tokens: [t + i], cached: 19 + t, blocks })), 16, 'last'));
        assert.is(program.stats.graphError, null);
        await program.dispose();
        assert.is(gpu.live.size, 0);
      }
    } finally {
      m.weights.close();
    }
    // Per rank, 2 layers × (dispatch + combine) in the prompt, the eager first decode step and the captured
    // second; the third replays the graph without calling NCCL again.
    assert.ok(calls.every((c) => c.length === 3 * 2 * 2), `calls per rank: ${calls.map((c) => c.length)}`);
    for (let i = 0; i < calls[0].length; i++) {
      for (let s = 0; s < 4; s++) {
        for (let d = 0; d < 4; d++) {
          assert.is(calls[s][i].sendCounts[d], calls[d][i].recvCounts[s], `call ${i}: rank ${s} → rank ${d}`);
          if (coordinated && s % 2 !== d % 2) assert.is(calls[s][i].sendCounts[d], 0, 'coordinated: only the same slice of each group');
        }
      }
    }
    const prompt = calls[0][0];
    assert.is(prompt.recvCounts.reduce((a, b) => a + b, 0), 57 * 64, 'the dispatch lands every one of the 57 rows');
  });
}

test.run();
