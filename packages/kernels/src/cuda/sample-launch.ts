// Program.runSample's host side: each row's SampleRow packed as cuda/sample.cu's SampleParams (56 bytes:
// temperature, top_p, min_p, penalty, uniform as f64, then top_k, pen_start, pen_count, pad as i32), followed
// by every row's penalized ids. The kernel reads logits at those ids, so they are checked here.
import { BackendError, type SampleRow } from '@zinfer/core';

export const SAMPLE_PARAM_BYTES = 56;
/** SAMPLE_THREADS in cuda/sample.cu: one block a row. */
export const SAMPLE_THREADS = 1024;

export function packSampleRows(rows: readonly SampleRow[], width: number): Uint8Array {
  const ids = rows.reduce((n, r) => n + r.penalized.length, 0);
  const bytes = new Uint8Array(rows.length * SAMPLE_PARAM_BYTES + ids * 4);
  const view = new DataView(bytes.buffer);
  const penalized = new Int32Array(bytes.buffer, rows.length * SAMPLE_PARAM_BYTES, ids);
  let at = 0;
  rows.forEach((row, r) => {
    check(row, r, width);
    const o = r * SAMPLE_PARAM_BYTES;
    [row.temperature, row.topP, row.minP, row.repetitionPenalty, row.uniform].forEach((v, i) => view.setFloat64(o + 8 * i, v, true));
    // top-k at or above the vocab keeps everything: off, as the host's `topK < n` test has it.
    view.setInt32(o + 40, row.topK < width ? row.topK : 0, true);
    view.setInt32(o + 44, at, true);
    view.setInt32(o + 48, row.penalized.length, true);
    penalized.set(row.penalized, at);
    at += row.penalized.length;
  });
  return bytes;
}

function check(row: SampleRow, r: number, width: number): void {
  const bad = (field: string, expected: string, found: unknown) => new BackendError(`runSample: row ${r} has an invalid ${field}`, { field: `rows[${r}].${field}`, expected, found: String(found) });
  if (!(row.uniform >= 0 && row.uniform < 1)) throw bad('uniform', 'a number in [0, 1)', row.uniform);
  if (!(Number.isFinite(row.temperature) && row.temperature >= 0)) throw bad('temperature', 'a finite number ≥ 0', row.temperature);
  // Any whole number, as validateSampling takes it (a top_k past 2^53 is off: see packSampleRows).
  if (!(Number.isInteger(row.topK) && row.topK >= 0)) throw bad('topK', 'an integer ≥ 0', row.topK);
  if (!(row.topP > 0 && row.topP <= 1)) throw bad('topP', 'a number in (0, 1]', row.topP);
  if (!(row.minP >= 0 && row.minP < 1)) throw bad('minP', 'a number in [0, 1)', row.minP);
  if (!(Number.isFinite(row.repetitionPenalty) && row.repetitionPenalty > 0)) throw bad('repetitionPenalty', 'a finite number > 0', row.repetitionPenalty);
  const out = row.penalized.find((id) => !(id >= 0 && id < width));
  if (out !== undefined) throw bad('penalized', `token ids in [0, ${width})`, out);
}
