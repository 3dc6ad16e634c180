// Chooses what one step computes and lays it out as a StepBatch: decode tokens of running sequences
// first (latency), then prompt chunks (chunked prefill), all within a per-step token budget. Paused
// requests (GenerationStream.pause(): a consumer applying backpressure) sit out until resumed.
import type { StepBatch, StepSequence } from './contracts.js';
import { slotOf } from './kv-cache.js';
import type { Sequence } from './sequence.js';

export interface StepPlan {
  batch: StepBatch;
  /** Per selected row: whose row it is, and whether to keep it as a prompt logit and/or sample from it. */
  rows: { seq: Sequence; promptLogit: boolean; sample: boolean }[];
  /** Sequences in the step and how many tokens each computes. */
  work: { seq: Sequence; count: number }[];
}

export function planStep(running: readonly Sequence[], budget: number, blockSize: number): StepPlan | null {
  const work: { seq: Sequence; count: number }[] = [];
  for (const seq of running) {
    if (budget === 0) break;
    if (!seq.prefilling && !seq.stream.paused) {
      work.push({ seq, count: 1 });
      budget--;
    }
  }
  for (const seq of running) {
    if (budget === 0) break;
    if (seq.prefilling && !seq.stream.paused) {
      const count = Math.min(seq.promptLength - seq.cached, budget);
      work.push({ seq, count });
      budget -= count;
    }
  }
  if (work.length === 0) return null;

  const total = work.reduce((n, w) => n + w.count, 0);
  const tokenIds = new Int32Array(total);
  const positions = new Int32Array(total);
  const slots = new Int32Array(total);
  const sequences: StepSequence[] = [];
  const selected: number[] = [];
  const rows: StepPlan['rows'] = [];
  let r = 0;
  for (const { seq, count } of work) {
    const table = seq.blockTable!;
    sequences.push({ queryStart: r, queryLength: count, contextLength: seq.cached + count, blockTable: table });
    for (let i = 0; i < count; i++, r++) {
      const pos = seq.cached + i;
      tokenIds[r] = seq.tokens[pos];
      positions[r] = pos;
      slots[r] = slotOf(table, blockSize, pos);
      const inPrompt = pos < seq.promptLength;
      const promptLogit = inPrompt && seq.req.promptLogits;
      // The row of the last known token predicts the next one.
      const sample = pos === seq.tokens.length - 1;
      if (promptLogit || sample) {
        selected.push(r);
        rows.push({ seq, promptLogit, sample });
      }
    }
  }
  return { batch: { tokenIds, positions, slots, sequences, selectedRows: Int32Array.from(selected) }, rows, work };
}
