// Micro-batches for the pipeline: a step's sequences split into contiguous groups with about equal
// token rows, each a StepBatch of its own (rows re-based). Outputs concatenated in group order are the
// whole step's output, since selected rows follow sequence order.
import type { StepBatch } from '@zinfer/core';

export function splitBatch(batch: StepBatch, parts: number): StepBatch[] {
  const seqs = batch.sequences;
  if (parts <= 1 || seqs.length <= 1) return [batch];
  const rows = batch.tokenIds.length;
  const groups: number[][] = [[]];
  let filled = 0;
  seqs.forEach((s, i) => {
    const target = (rows * groups.length) / parts;
    if (groups.at(-1)!.length > 0 && filled >= target && groups.length < parts) groups.push([]);
    groups.at(-1)!.push(i);
    filled += s.queryLength;
  });
  return groups.map((g) => slice(batch, g[0], g[g.length - 1]));
}

function slice(batch: StepBatch, first: number, last: number): StepBatch {
  const start = batch.sequences[first].queryStart;
  const end = batch.sequences[last].queryStart + batch.sequences[last].queryLength;
  return {
    tokenIds: batch.tokenIds.slice(start, end),
    positions: batch.positions.slice(start, end),
    slots: batch.slots.slice(start, end),
    sequences: batch.sequences.slice(first, last + 1).map((s) => ({ ...s, queryStart: s.queryStart - start })),
    selectedRows: Int32Array.from(batch.selectedRows.filter((r) => r >= start && r < end), (r) => r - start),
  };
}

export function concat<T extends Float32Array | Int32Array>(parts: T[]): T {
  if (parts.length === 1) return parts[0];
  const Kind = parts[0].constructor as new (n: number) => T;
  const out = new Kind(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
