// The linear kernel's blocking, which the JS side needs to size scratch and fill arguments. Must agree
// with asm/linear.ts (RB, TILE_STRIDE, the packed-row layout).
/** Rows of the GEMM microkernel (8×4); a row block is a multiple of it. */
export const RB = 8;
/** Floats per tile row. */
export const TILE_STRIDE = 8;
/** Tiles: one for the outputs, one for the "up" half of a gated pair. */
export const TILE_BYTES = 2 * RB * TILE_STRIDE * 4;
/**
 * A thread's packed block of x rows. Each row block streams the weights from memory once, so larger
 * blocks mean fewer passes: 1 MiB (40 rows at K = 5632, 128 at K = 2048) measured 3–6% faster at the
 * 1.1B prefill shapes than 512 KiB on a Zen 5 with 1 MiB of L2 per core; 8 rows are read at a time, so
 * the block need not stay in L2 whole.
 */
export const PACKED_BYTES = 1024 * 1024;

/** Inner size of packed rows: K rounded up to whole groups of 8. */
export const paddedK = (K: number): number => Math.ceil(K / 8) * 8;

/** Rows per row block for inner size K: as many packed rows as fit PACKED_BYTES, a multiple of RB. */
export function rowBlock(K: number): number {
  return Math.max(RB, Math.floor(PACKED_BYTES / (paddedK(K) * 4 * RB)) * RB);
}

/** Scratch one thread needs for a linear of inner size K: the tiles and a row block of packed x. */
export function linearScratchBytes(K: number): number {
  return TILE_BYTES + rowBlock(K) * paddedK(K) * 4;
}
