// The KV cache's block bookkeeping (the storage itself belongs to the backend's program). Sequences own
// fixed-size blocks through a block table, so memory is sized from a byte budget, never from a
// max-tokens workspace, and a finished sequence's blocks go straight back to the pool.

export class BlockAllocator {
  private readonly freeList: number[];

  constructor(readonly numBlocks: number, readonly blockSize: number) {
    // Popping from the end hands out low block numbers first, which keeps small runs compact.
    this.freeList = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
  }

  get free(): number {
    return this.freeList.length;
  }

  /** Blocks needed to hold `tokens` tokens. */
  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** `n` blocks, or null when fewer are free (nothing is taken then). */
  allocate(n: number): Int32Array | null {
    if (n > this.freeList.length) return null;
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.freeList.pop()!;
    return out;
  }

  release(blocks: Int32Array): void {
    for (let i = blocks.length - 1; i >= 0; i--) this.freeList.push(blocks[i]);
  }
}

/** The KV-cache slot of `position` in a sequence with this block table. */
export function slotOf(blockTable: Int32Array, blockSize: number, position: number): number {
  return blockTable[Math.floor(position / blockSize)] * blockSize + (position % blockSize);
}
