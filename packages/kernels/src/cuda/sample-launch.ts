// Program.runSample's host side: each row's SampleRow packed as cuda/sample.cu's SampleParams (56 bytes:
// temperature, top_p, min_p, penalty, uniform as f64, then top_k, pen_start, pen_count, pad as i32), followed
// by every row's penalized ids. The kernel reads logits at those ids, so they are checked here. And how many
// blocks (a thread-block cluster) share a row.
import { BackendError, type SampleRow } from '@zinfer/core';
import { EnvChoice } from './env-choice.js';

export const SAMPLE_PARAM_BYTES = 56;
/** SAMPLE_THREADS in cuda/sample.cu: the threads of each of a row's blocks. */
export const SAMPLE_THREADS = 1024;
/** Ids a block of a row takes at least: below this a block's passes are shorter than the cluster's barriers. */
export const SAMPLE_MIN_SLICE = 2048;

/**
 * ZINFER_SAMPLE_CLUSTER: the blocks a row is split over. `auto` (the default) as sampleClusterBlocks picks;
 * a number fixes it (capped by what the GPU takes), for the bench's A/B.
 */
export const SAMPLE_CLUSTER_MODES = ['auto', '1', '2', '4', '8'] as const;
export type SampleClusterMode = (typeof SAMPLE_CLUSTER_MODES)[number];
const mode = new EnvChoice(SAMPLE_CLUSTER_MODES, 'auto', 'ZINFER_SAMPLE_CLUSTER');
export const sampleClusterMode = (): SampleClusterMode => mode.get();
export const setSampleClusterMode = (m: SampleClusterMode): void => mode.set(m);

/**
 * Blocks (one cluster) a row of `width` logits is split over when `rows` rows are sampled: one per
 * SAMPLE_MIN_SLICE ids, at most the GPU's cluster limit, and no more than leaves every row's blocks on the
 * SMs at once (a 1,024-thread block of the kernel fills an SM's registers); a power of two, which packs into
 * a GPC's SMs. 1 where the GPU has no clusters.
 */
export function sampleClusterBlocks(width: number, rows: number, gpu: { maxClusterBlocks: number; multiprocessors: number }, m: SampleClusterMode = mode.get()): number {
  if (m !== 'auto') return Math.min(Number(m), gpu.maxClusterBlocks);
  const bySlice = Math.ceil(width / SAMPLE_MIN_SLICE);
  const bySms = Math.floor(gpu.multiprocessors / Math.max(rows, 1));
  const most = Math.max(1, Math.min(gpu.maxClusterBlocks, bySlice, bySms));
  return 2 ** Math.floor(Math.log2(most));
}

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
