// The pieces of the cooperative fetch: share images cut so every dtype splits, the chunked all-gather, and
// the spreading of sequences over data-parallel ranks (sticky, balanced, idle ranks kept in step).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { StepBatch } from '@zinfer/core';
import { createShmGroup, idleBatch, mergeOutputs, RankAssigner, shmCommunicator } from '@zinfer/parallel';
import { ALIGN, allGatherChunked, shareOf } from '../src/index.js';

test('shareOf: odd-sized f16 and f32 tensors; the shares of all ranks concatenate to the whole image', () => {
  const weights = [
    { name: 'a', tensor: { dtype: 'f16' as const, shape: [3, 5], data: Uint16Array.from({ length: 15 }, (_, i) => i + 1) } },
    { name: 'b', tensor: { dtype: 'f32' as const, shape: [7], data: Float32Array.from({ length: 7 }, (_, i) => i / 3) } },
  ];
  for (const size of [1, 2, 3, 4]) {
    const shares = Array.from({ length: size }, (_, rank) => shareOf(weights, { rank, size }));
    const { layout } = shares[0];
    assert.is(layout.regionBytes % (size * ALIGN), 0, 'padded to size × ALIGN');
    const image = new Uint8Array(layout.regionBytes);
    shares.forEach((s, r) => {
      assert.is(s.share.byteLength, layout.regionBytes / size);
      image.set(new Uint8Array(s.share.buffer, s.share.byteOffset, s.share.byteLength), r * s.share.byteLength);
    });
    assert.equal([...new Uint16Array(image.buffer, layout.entries[0].offset, 15)], [...weights[0].tensor.data]);
    assert.equal([...new Float32Array(image.buffer, layout.entries[1].offset, 7)], [...weights[1].tensor.data]);
    assert.is(layout.entries[1].offset % 256, 0, 'tensors 256-byte aligned (device slot layout)');
  }
});

test('allGatherChunked: messages larger than the chunk arrive whole and in rank order', async () => {
  const size = 3;
  const group = createShmGroup(size, { slotBytes: 64 });
  const n = 37;
  const sends = Array.from({ length: size }, (_, r) => Float32Array.from({ length: n }, (_, i) => r * 1000 + i));
  const recvs = sends.map(() => new Float32Array(n * size));
  await Promise.all(sends.map((s, r) => allGatherChunked(shmCommunicator(group, r), s, recvs[r], 16)));
  const want = Float32Array.from({ length: n * size }, (_, k) => Math.floor(k / n) * 1000 + (k % n));
  for (const r of recvs) assert.equal([...r], [...want]);
});

function batch(seqs: { first: number; q: number; ctx: number }[]): StepBatch {
  let row = 0;
  const sequences = seqs.map((s) => ({ queryStart: (row += s.q) - s.q, queryLength: s.q, contextLength: s.ctx, blockTable: Int32Array.of(s.first) }));
  const rows = row;
  return {
    tokenIds: Int32Array.from({ length: rows }, (_, i) => 100 + i), positions: new Int32Array(rows), slots: new Int32Array(rows), sequences,
    selectedRows: Int32Array.from(sequences, (s) => s.queryStart + s.queryLength - 1),
  };
}

test('RankAssigner: new sequences spread, running ones stay on their rank, outputs merge in step order', () => {
  const a = new RankAssigner(2);
  const first = a.split(batch([{ first: 4, q: 3, ctx: 3 }, { first: 9, q: 2, ctx: 2 }, { first: 1, q: 1, ctx: 1 }]));
  assert.equal(first.map((p) => p?.batch.sequences.length), [2, 1]);
  assert.equal([...first[0]!.batch.tokenIds], [100, 101, 102, 105]);
  const next = a.split(batch([{ first: 1, q: 1, ctx: 2 }, { first: 9, q: 1, ctx: 3 }]));
  assert.equal(next.map((p) => p?.selected), [[0], [1]], 'block 1 stayed on rank 0, block 9 on rank 1');
  const outs = [Float32Array.of(1, 1), Float32Array.of(2, 2)];
  assert.equal([...mergeOutputs(next, outs, 2)], [1, 1, 2, 2]);
  const lone = a.split(batch([{ first: 9, q: 1, ctx: 4 }]));
  assert.is(lone[0], null, 'rank 0 is idle this step');
  assert.equal([...idleBatch(8, 16).slots], [128]);
  assert.throws(() => a.split(batch([{ first: 30, q: 1, ctx: 5 }])), /never ran its start/);
});

test.run();
