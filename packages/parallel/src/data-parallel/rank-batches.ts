// Spreading a step's sequences over data-parallel ranks. A sequence stays on the rank that ran its first
// chunk (its KV cache lives there), found again by the first block of its block table, which the engine
// never changes while the sequence lives; a new sequence goes to the rank with the fewest sequences in
// this step. Every rank runs every step (the cooperative fetch is collective): one without sequences
// runs a one-row step into a scratch KV block that no sequence owns.
import { BackendError, type StepBatch } from '@zinfer/core';
import type { RankPick } from '../launch/rank-pick.js';

export interface RankPart {
  batch: StepBatch;
  /** Positions in the whole step's selected rows of this part's selected rows, in order. */
  selected: number[];
}

export class RankAssigner {
  private readonly owner = new Map<number, number>();
  private next = 0;

  constructor(readonly size: number) {}

  /** One part per rank; null for a rank with no sequence this step. */
  split(batch: StepBatch): (RankPart | null)[] {
    const seqsOf: number[][] = Array.from({ length: this.size }, () => []);
    batch.sequences.forEach((s, i) => {
      const first = s.blockTable[0];
      let rank = this.owner.get(first);
      if (s.contextLength === s.queryLength || rank === undefined) {
        if (s.contextLength !== s.queryLength) throw new BackendError(`a sequence continues on data-parallel ranks that never ran its start (first KV block ${first})`, { field: 'batch.sequences' });
        rank = this.emptiest(seqsOf);
        this.owner.set(first, rank);
      }
      seqsOf[rank].push(i);
    });
    return seqsOf.map((idx) => (idx.length ? part(batch, idx) : null));
  }

  private emptiest(seqsOf: number[][]): number {
    let best = -1;
    for (let k = 0; k < this.size; k++) {
      const r = (this.next + k) % this.size;
      if (best < 0 || seqsOf[r].length < seqsOf[best].length) best = r;
    }
    this.next = (best + 1) % this.size;
    return best;
  }
}

/** The step of the given sequences alone, rows re-based. */
function part(batch: StepBatch, seqs: number[]): RankPart {
  const rows: number[] = [];
  const sequences = seqs.map((i) => {
    const s = batch.sequences[i];
    const queryStart = rows.length;
    for (let k = 0; k < s.queryLength; k++) rows.push(s.queryStart + k);
    return { ...s, queryStart };
  });
  const newRow = new Map(rows.map((r, k) => [r, k]));
  const selected: number[] = [];
  const selectedRows: number[] = [];
  batch.selectedRows.forEach((r, k) => {
    const at = newRow.get(r);
    if (at === undefined) return;
    selected.push(k);
    selectedRows.push(at);
  });
  const pick = (a: Int32Array) => Int32Array.from(rows, (r) => a[r]);
  return { batch: { tokenIds: pick(batch.tokenIds), positions: pick(batch.positions), slots: pick(batch.slots), sequences, selectedRows: Int32Array.from(selectedRows) }, selected };
}

/** A one-row step writing only into `block` (the scratch block past the engine's blocks). */
export function idleBatch(block: number, blockSize: number): StepBatch {
  return {
    tokenIds: Int32Array.of(0), positions: Int32Array.of(0), slots: Int32Array.of(block * blockSize),
    sequences: [{ queryStart: 0, queryLength: 1, contextLength: 1, blockTable: Int32Array.of(block) }],
    selectedRows: Int32Array.of(0),
  };
}

/** The whole step's output from each rank's: selected row k of the step comes from the rank that ran it. */
export function mergeOutputs<T extends Float32Array | Int32Array>(parts: readonly (RankPart | null)[], outs: readonly T[], selectedCount: number): T {
  let merged: T | null = null;
  parts.forEach((p, r) => {
    if (!p || p.selected.length === 0) return;
    const width = outs[r].length / p.selected.length;
    merged ??= new (outs[r].constructor as new (n: number) => T)(selectedCount * width);
    p.selected.forEach((k, j) => merged!.set(outs[r].subarray(j * width, (j + 1) * width), k * width));
  });
  return merged ?? (new Float32Array(0) as T);
}

/** A rank's share of a step's pick: its part's sample rows (in the part's selected order); an idle rank's scratch step just takes its argmax. */
export function partPick(pick: RankPick | undefined, part: RankPart | null): RankPick | undefined {
  if (!pick) return undefined;
  if (!part || pick.kind === 'argmax') return { kind: 'argmax' };
  if (pick.kind === 'sampleSteps') throw new BackendError('data-parallel ranks run one step a call (they do not chain)');
  return { kind: 'sample', rows: part.selected.map((k) => pick.rows[k]) };
}
