// The cooperative fetch of a data-parallel rank: its tier streams only the rank's share of each group's
// image, and an all-gather over the fetch group assembles the whole image, from which the group's tensors
// are views. Collectives pair across ranks by call order, so the gathers run one at a time in acquire
// order (the contract's group order) even when the tier's reads finish out of order.
import { fromF32, type Communicator, type FloatDType, type StreamedWeight, type StreamShard, type WeightName } from '@zinfer/core';
import { groupViews, type GroupLayout } from './group-layout.js';
import { StreamBase } from './stream-base.js';

/** A group's image layout, and the dtype each tensor had in the source (the image keeps vectors as f32). */
export interface ShardedGroup {
  layout: GroupLayout;
  stored: readonly FloatDType[];
}

/** Floats per all-gather call: the shared-memory communicator refuses messages beyond its slot (8 MiB). */
const CHUNK_FLOATS = 2 ** 20;

export class ShardedStream extends StreamBase {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly free: ArrayBuffer[] = [];
  private readonly images = new Map<number, ArrayBuffer>();
  private readonly imageBytes: number;
  /** Groups a device program took as shares (it gathers them itself). */
  private readonly shares = new Set<number>();
  readonly shard: StreamShard;

  /** `inner` streams one tensor per group: the rank's share of `layouts[g]`'s image, as f32. */
  constructor(groups: readonly (readonly WeightName[])[], prefetch: number, private readonly inner: StreamBase, private readonly layouts: readonly ShardedGroup[], private readonly communicator: Communicator, private readonly alloc: (bytes: number) => ArrayBuffer) {
    super(groups, prefetch);
    this.imageBytes = Math.max(0, ...layouts.map((l) => l.layout.regionBytes));
    this.shard = {
      rank: communicator.rank, size: communicator.size, communicator,
      image: (g) => ({ entries: layouts[g].layout.entries, bytes: layouts[g].layout.regionBytes }),
      acquireShare: (g) => this.holding(g, () => this.loadShare(g)),
    };
  }

  private async loadShare(group: number): Promise<Uint8Array> {
    const start = performance.now();
    const [share] = await this.inner.acquire(group);
    this.shares.add(group);
    this.recordFetch(group, start, performance.now());
    const d = share.tensor.data;
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  }

  protected load(group: number): Promise<StreamedWeight[]> {
    const run = this.chain.then(() => this.gather(group));
    this.chain = run.catch(() => {});
    return run;
  }

  private async gather(group: number): Promise<StreamedWeight[]> {
    const start = performance.now();
    const [share] = await this.inner.acquire(group);
    try {
      const { layout, stored } = this.layouts[group];
      const image = this.free.pop() ?? this.alloc(this.imageBytes);
      try {
        await allGatherChunked(this.communicator, share.tensor.data as Float32Array, new Float32Array(image, 0, layout.regionBytes / 4));
      } catch (e) {
        this.free.push(image);
        throw e;
      }
      this.images.set(group, image);
      this.recordFetch(group, start, performance.now());
      // Host programs get the source's dtypes back (f16/bf16 → f32 → same dtype is exact).
      return groupViews(layout, image, 0).map((w, i) => (w.tensor.dtype === stored[i] ? w : { name: w.name, tensor: { ...w.tensor, dtype: stored[i], data: fromF32(stored[i], w.tensor.data as Float32Array) } }));
    } finally {
      this.inner.release(group);
    }
  }

  protected unload(group: number): void {
    if (this.shares.delete(group)) return this.inner.release(group);
    const image = this.images.get(group);
    this.images.delete(group);
    if (image) this.free.push(image);
  }

  async close(): Promise<void> {
    await this.chain;
    await this.inner.close();
  }
}

/** recv = every rank's `send` in rank order, in pieces the communicator accepts. */
export async function allGatherChunked(comm: Communicator, send: Float32Array, recv: Float32Array, chunk = CHUNK_FLOATS): Promise<void> {
  const n = send.length;
  if (n <= chunk) return comm.allGather(send, recv);
  const tmp = new Float32Array(chunk * comm.size);
  for (let at = 0; at < n; at += chunk) {
    const len = Math.min(chunk, n - at);
    const part = len === chunk ? tmp : tmp.subarray(0, len * comm.size);
    await comm.allGather(send.subarray(at, at + len), part);
    for (let r = 0; r < comm.size; r++) recv.set(part.subarray(r * len, (r + 1) * len), r * n + at);
  }
}
