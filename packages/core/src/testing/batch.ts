import type { StepBatch } from '../contracts.js';

/** One sequence's part of a step: its new tokens, how many it has cached, and its physical blocks. */
export interface SequencePart {
  tokens: readonly number[];
  /** Tokens of this sequence already in the KV cache from earlier steps. */
  cached: number;
  /** Physical block of each logical block of the sequence. */
  blocks: readonly number[];
}

/**
 * The StepBatch a scheduler would build: rows in part order, position = cached + i, slot from the block
 * table. `select`: the last row of each sequence (decode) or every row (prompt logits).
 */
export function stepBatch(parts: readonly SequencePart[], blockSize: number, select: 'last' | 'all' = 'last'): StepBatch {
  const tokenIds: number[] = [];
  const positions: number[] = [];
  const slots: number[] = [];
  const selected: number[] = [];
  const sequences = parts.map((part) => {
    const queryStart = tokenIds.length;
    part.tokens.forEach((t, i) => {
      const p = part.cached + i;
      const block = part.blocks[Math.floor(p / blockSize)];
      if (block === undefined) throw new Error(`test batch: position ${p} needs block ${Math.floor(p / blockSize)}, the sequence has ${part.blocks.length}`);
      tokenIds.push(t);
      positions.push(p);
      slots.push(block * blockSize + (p % blockSize));
      if (select === 'all' || i === part.tokens.length - 1) selected.push(queryStart + i);
    });
    const contextLength = part.cached + part.tokens.length;
    return { queryStart, queryLength: part.tokens.length, contextLength, blockTable: Int32Array.from(part.blocks) };
  });
  return {
    tokenIds: Int32Array.from(tokenIds),
    positions: Int32Array.from(positions),
    slots: Int32Array.from(slots),
    sequences,
    selectedRows: Int32Array.from(selected),
  };
}

/** 0, 1, ..., n-1. */
export function range(n: number, start = 0): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}
