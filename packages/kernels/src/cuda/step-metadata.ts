// The int32 arrays one step's kernels read, packed into one host array for a single upload, with each
// part's offset (in elements). Also the host-side facts launches are sized from (row positions, whether
// the step is pure decode), and the padding that gives decode steps of a batch-size bucket one layout.
import type { StepBatch, StepSequence } from '@zinfer/core';

/** Query rows per tile of the tensor-core prompt attention (FA_BM in cuda/flash.cu). */
export const FLASH_TILE_ROWS = 64;

export interface StepMetadata {
  ints: Int32Array;
  /** Element offsets of each part in `ints`. */
  at: { tokenIds: number; positions: number; slots: number; selected: number; rowSeq: number; seqInfo: number; tiles: number; blockTables: number };
  rows: number;
  selected: number;
  /** Position of each row, from its sequence (contextLength − queryLength + i). */
  rowPositions: Int32Array;
  /** Every sequence contributes one row (a decode step): attention takes the decode kernel. */
  decodeOnly: boolean;
  /** Tiles of the prompt attention kernel (3 ints each at `at.tiles`). */
  tiles: number;
  /** Every row is selected, in order: a gather of the selected rows is its input itself. */
  selectsAll: boolean;
}

/**
 * tokenIds, positions, slots [rows]; selectedRows [selected]; rowSeq [rows] (sequence of each row);
 * seqInfo [sequences, 4] = (queryStart, queryLength, contextLength, offset of its block table);
 * tiles [tiles, 3] = (sequence, first row, rows ≤ 64), the longest-running (latest positions) first;
 * blockTables: the blocks each sequence's context covers, sequence after sequence.
 */
export function packStep(batch: StepBatch, blockSize: number): StepMetadata {
  const rows = batch.tokenIds.length;
  const selected = batch.selectedRows.length;
  const seqs = batch.sequences;
  const blocksOf = seqs.map((s) => Math.ceil(s.contextLength / blockSize));
  const totalBlocks = blocksOf.reduce((a, b) => a + b, 0);
  const tileList: [number, number, number, number][] = []; // (sequence, first row, rows, last position)
  seqs.forEach((s, i) => {
    for (let q = 0; q < s.queryLength; q += FLASH_TILE_ROWS) {
      const n = Math.min(FLASH_TILE_ROWS, s.queryLength - q);
      tileList.push([i, s.queryStart + q, n, s.contextLength - s.queryLength + q + n - 1]);
    }
  });
  tileList.sort((a, b) => b[3] - a[3]);
  const at = {
    tokenIds: 0,
    positions: rows,
    slots: 2 * rows,
    selected: 3 * rows,
    rowSeq: 3 * rows + selected,
    seqInfo: 4 * rows + selected,
    tiles: 4 * rows + selected + 4 * seqs.length,
    blockTables: 4 * rows + selected + 4 * seqs.length + 3 * tileList.length,
  };
  const ints = new Int32Array(at.blockTables + totalBlocks);
  ints.set(batch.tokenIds, at.tokenIds);
  ints.set(batch.positions, at.positions);
  ints.set(batch.slots, at.slots);
  ints.set(batch.selectedRows, at.selected);
  const rowPositions = new Int32Array(rows);
  let table = at.blockTables;
  seqs.forEach((s, i) => {
    for (let q = 0; q < s.queryLength; q++) {
      ints[at.rowSeq + s.queryStart + q] = i;
      rowPositions[s.queryStart + q] = s.contextLength - s.queryLength + q;
    }
    ints.set([s.queryStart, s.queryLength, s.contextLength, table - at.blockTables], at.seqInfo + 4 * i);
    ints.set(s.blockTable.subarray(0, blocksOf[i]), table);
    table += blocksOf[i];
  });
  tileList.forEach(([s, first, n], i) => ints.set([s, first, n], at.tiles + 3 * i));
  const decodeOnly = seqs.length === rows && seqs.every((s) => s.queryLength === 1);
  const selectsAll = selected === rows && batch.selectedRows.every((r, i) => r === i);
  return { ints, at, rows, selected, rowPositions, decodeOnly, tiles: tileList.length, selectsAll };
}

/**
 * Whether a step can replay a captured decode graph: one row per sequence, in order, each selected.
 * (The scheduler's decode steps look like this; prompt chunks and prompt logits do not.)
 */
export function isGraphableDecode(batch: StepBatch): boolean {
  const n = batch.tokenIds.length;
  if (n === 0 || batch.sequences.length !== n || batch.selectedRows.length !== n) return false;
  for (let i = 0; i < n; i++) {
    const s = batch.sequences[i];
    if (s.queryLength !== 1 || s.queryStart !== i || batch.selectedRows[i] !== i) return false;
  }
  return true;
}

/**
 * The decode step padded to `bucket` rows: each extra row is a one-token sequence at position 0 whose
 * k and v go to `scratchBlock` (a cache block no sequence owns), so its kernels run harmlessly and every
 * part of the metadata has the same offsets for any step of this bucket.
 */
export function padDecodeBatch(batch: StepBatch, bucket: number, scratchBlock: number, blockSize: number): StepBatch {
  const n = batch.tokenIds.length;
  if (n === bucket) return batch;
  const grow = (a: Int32Array, fill: (i: number) => number) => {
    const out = new Int32Array(bucket);
    out.set(a);
    for (let i = n; i < bucket; i++) out[i] = fill(i);
    return out;
  };
  const table = Int32Array.of(scratchBlock);
  const extra: StepSequence[] = [];
  for (let i = n; i < bucket; i++) extra.push({ queryStart: i, queryLength: 1, contextLength: 1, blockTable: table });
  return {
    tokenIds: grow(batch.tokenIds, () => 0),
    positions: grow(batch.positions, () => 0),
    slots: grow(batch.slots, () => scratchBlock * blockSize),
    sequences: [...batch.sequences, ...extra],
    selectedRows: grow(batch.selectedRows, (i) => i),
  };
}
