import { BackendError, type KvCacheSpec, type KvLayout } from '@zinfer/core';

/** The paged KV cache: per layer, K and V as [numBlocks*blockSize, kvHeads*headDim] f32 rows. */
export class KvCache {
  readonly k: Float32Array[] = [];
  readonly v: Float32Array[] = [];
  /** kvHeads * headDim: the width of one cached row. */
  readonly width: number;
  readonly slots: number;

  constructor(readonly layout: KvLayout, readonly spec: KvCacheSpec) {
    for (const field of ['numBlocks', 'blockSize'] as const) {
      const n = spec[field];
      if (!Number.isSafeInteger(n) || n < 1) throw new BackendError('KV cache size is not a positive integer', { field: `kvCache.${field}`, expected: 'an integer ≥ 1', found: String(n) });
    }
    this.width = layout.kvHeads * layout.headDim;
    this.slots = spec.numBlocks * spec.blockSize;
    for (let l = 0; l < layout.layers; l++) {
      this.k.push(alloc(this.slots * this.width));
      this.v.push(alloc(this.slots * this.width));
    }
  }
}

function alloc(n: number): Float32Array {
  try {
    return new Float32Array(n);
  } catch (e) {
    throw new BackendError(`cannot allocate a KV-cache layer of ${n * 4} bytes (${String(e)}); use fewer or smaller blocks`, { field: 'kvCache.numBlocks' });
  }
}

/** KV bytes per block: K and V, every layer, f32. */
export function kvBytesPerBlock(layout: KvLayout, blockSize: number): number {
  return 2 * layout.layers * blockSize * layout.kvHeads * layout.headDim * 4;
}
