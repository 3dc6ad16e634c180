import { BackendError, type StepBatch } from '@zinfer/core';
import type { KvCache } from './kv-cache.js';

/**
 * Checks a step's batch before any op runs, so a scheduler bug surfaces as a message naming the field
 * rather than as a silent read of another sequence's cache. `cache` is null for graphs without attention.
 */
export function validateBatch(batch: StepBatch, cache: KvCache | null): void {
  const rows = batch.tokenIds.length;
  for (const field of ['positions', 'slots'] as const) {
    if (batch[field].length !== rows) fail(`batch.${field} has one entry per token row`, field, `${rows} entries`, `${batch[field].length}`);
  }
  batch.selectedRows.forEach((r, i) => {
    if (!(r >= 0 && r < rows)) fail('a selected row is not a row of the step', `selectedRows[${i}]`, `a row in [0, ${rows})`, `${r}`);
  });
  if (cache) validateKv(batch, cache);
}

function validateKv(batch: StepBatch, cache: KvCache): void {
  const rows = batch.tokenIds.length;
  const { numBlocks, blockSize } = cache.spec;
  batch.slots.forEach((s, r) => {
    if (!(s >= 0 && s < cache.slots)) fail('a KV slot is outside the cache', `slots[${r}]`, `a slot in [0, ${cache.slots})`, `${s}`);
  });
  const owner = new Int32Array(rows).fill(-1);
  batch.sequences.forEach((seq, s) => {
    const at = `sequences[${s}]`;
    if (!(seq.queryLength >= 1 && seq.queryStart >= 0 && seq.queryStart + seq.queryLength <= rows)) {
      fail('a sequence covers rows outside the step', at, `rows within [0, ${rows})`, `queryStart ${seq.queryStart}, queryLength ${seq.queryLength}`);
    }
    if (!(seq.contextLength >= seq.queryLength)) fail('a sequence has less context than query rows', `${at}.contextLength`, `≥ ${seq.queryLength}`, `${seq.contextLength}`);
    const blocks = Math.ceil(seq.contextLength / blockSize);
    if (seq.blockTable.length < blocks) fail('a block table is too short for its context', `${at}.blockTable`, `≥ ${blocks} blocks`, `${seq.blockTable.length}`);
    for (let b = 0; b < blocks; b++) {
      const block = seq.blockTable[b];
      if (!(block >= 0 && block < numBlocks)) fail('a block table entry is outside the cache', `${at}.blockTable[${b}]`, `a block in [0, ${numBlocks})`, `${block}`);
    }
    for (let r = seq.queryStart; r < seq.queryStart + seq.queryLength; r++) {
      if (owner[r] !== -1) fail(`row ${r} belongs to two sequences`, at, `one sequence per row`, `sequences ${owner[r]} and ${s}`);
      owner[r] = s;
    }
  });
  const orphan = owner.indexOf(-1);
  if (orphan !== -1) fail(`row ${orphan} belongs to no sequence`, 'sequences', 'every row in one sequence', `row ${orphan} uncovered`);
}

function fail(message: string, field: string, expected: string, found: string): never {
  throw new BackendError(`invalid step batch: ${message}`, { field: `batch.${field}`, expected, found });
}
