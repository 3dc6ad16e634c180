// A micro-batch's KV-cache blocks in the engine's numbering, and the same batch in device numbering.
import { BackendError, type StepBatch } from '@zinfer/core';

export interface StepBlocks {
  /** Every block the step reads or writes: each sequence's block table up to its context. */
  blocks: Set<number>;
  /** The blocks of the step's slots (its new tokens' K and V). */
  writes: Set<number>;
  /**
   * Blocks that hold no token of any sequence before the step (they start at or after every using
   * sequence's cached tokens): whatever they held belonged to a sequence the engine has freed, so they
   * need no load, and their host copy is dead.
   */
  fresh: Set<number>;
}

/** The blocks `batch` uses; an id outside the host store's `hostBlocks` names the batch field. */
export function stepBlocks(batch: StepBatch, blockSize: number, hostBlocks: number): StepBlocks {
  const blocks = new Set<number>();
  const writes = new Set<number>();
  const check = (b: number, field: string) => {
    if (!(Number.isInteger(b) && b >= 0 && b < hostBlocks)) throw new BackendError('a KV block is outside the offloaded cache', { field: `batch.${field}`, expected: `a block in [0, ${hostBlocks})`, found: String(b) });
  };
  const live = new Set<number>();
  batch.sequences.forEach((s, i) => {
    const used = Math.ceil(s.contextLength / blockSize);
    const cached = s.contextLength - s.queryLength;
    for (let j = 0; j < used && j < s.blockTable.length; j++) {
      check(s.blockTable[j], `sequences[${i}].blockTable[${j}]`);
      blocks.add(s.blockTable[j]);
      if (j * blockSize < cached) live.add(s.blockTable[j]);
    }
  });
  batch.slots.forEach((slot, r) => {
    const b = Math.floor(slot / blockSize);
    check(b, `slots[${r}]`);
    blocks.add(b);
    writes.add(b);
  });
  return { blocks, writes, fresh: new Set([...blocks].filter((b) => !live.has(b))) };
}

/** `batch` with its slots and block tables in device blocks (tables cut to the blocks the context covers). */
export function toDeviceBlocks(batch: StepBatch, device: ReadonlyMap<number, number>, blockSize: number): StepBatch {
  const at = (b: number) => device.get(b)!;
  return {
    ...batch,
    slots: Int32Array.from(batch.slots, (s) => at(Math.floor(s / blockSize)) * blockSize + (s % blockSize)),
    sequences: batch.sequences.map((s) => ({ ...s, blockTable: Int32Array.from(s.blockTable.subarray(0, Math.ceil(s.contextLength / blockSize)), at) })),
  };
}
