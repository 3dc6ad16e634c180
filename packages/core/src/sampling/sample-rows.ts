import type { SampleRow, StepBatch } from '../contracts.js';
import { BackendError } from '../errors.js';
import { TokenFilter } from './token-filter.js';

/** A greedy row that draws nothing: for rows whose token is not used (a prompt chunk's), and argmax picks. */
export const GREEDY_ROW: SampleRow = Object.freeze({ temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, uniform: 0, penalized: new Int32Array(0) });

/**
 * Program.runSample on the host: each row's token from its logits, [rows, width] row-major, as a device
 * kernel must pick it (TokenFilter.pick with the row's params, penalized ids and uniform). For backends
 * whose logits are already in host memory (reference), so the engine's sampling path is one path; the cpu
 * backend runs the same steps as a wasm kernel over its pool (kernels' cpu/sample-rows.ts).
 */
export class HostRowSampler {
  private filter: TokenFilter | null = null;

  pick(logits: Float32Array, rows: readonly SampleRow[], width: number): Int32Array {
    if (rows.length * width !== logits.length) {
      throw new RangeError(`runSample got ${rows.length} sample rows for ${logits.length / width} rows of logits`);
    }
    if (this.filter?.vocabSize !== width && rows.length) this.filter = new TokenFilter(width);
    return Int32Array.from(rows, (row, r) => this.filter!.pick(row, logits.subarray(r * width, (r + 1) * width), row.penalized, row.uniform));
  }
}

/** runSample's rows must match the step's selected rows one to one; checked before the step runs, so a refused call leaves the KV cache as it was. */
export function checkSampleRows(batch: StepBatch, rows: readonly SampleRow[]): void {
  const selected = batch.selectedRows.length;
  if (rows.length !== selected) throw new BackendError(`runSample got ${rows.length} sample rows for a step of ${selected} selected rows`, { field: 'rows', expected: String(selected), found: String(rows.length) });
}
