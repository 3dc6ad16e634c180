import type { SampleRow } from '../contracts.js';
import { TokenFilter } from './token-filter.js';

/**
 * Program.runSample on the host: each row's token from its logits, [rows, width] row-major, as a device
 * kernel must pick it (TokenFilter.pick with the row's params, penalized ids and uniform). For backends
 * whose logits are already in host memory (reference, cpu), so the engine's sampling path is one path.
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
