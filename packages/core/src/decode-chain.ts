// Chained decode: several decode steps of the same sequences in one call, each step's token being the pick
// of the step before: its argmax (Program.runArgmaxSteps), or its sampled token for that step's params and
// draw (Program.runSampleSteps). A device backend feeds the ids on the device, so the GPU never waits for
// the host between the steps; chainArgmaxSteps and chainSampleSteps do the same on the host, for programs
// (and ranks) without it. Both lay out step j exactly as the scheduler would have: positions and context
// one further per step, slots through each sequence's block table.
import type { Program, SampleRow, StepBatch } from './contracts.js';
import { BackendError } from './errors.js';
import { slotOf } from './kv-cache.js';
import { checkSampleRows, GREEDY_ROW, HostRowSampler } from './sampling/index.js';

/** Whether `batch` is a decode step that can be chained: one row a sequence, in order, every row selected. */
export function isChainableDecode(batch: StepBatch): boolean {
  const rows = batch.tokenIds.length;
  if (rows === 0 || batch.sequences.length !== rows || batch.selectedRows.length !== rows) return false;
  return batch.sequences.every((s, i) => s.queryStart === i && s.queryLength === 1 && batch.selectedRows[i] === i);
}

/**
 * The decode step after `batch`: each row one position further, with `ids[i]` as row i's token. Throws a
 * BackendError when a sequence's block table does not cover the new position (the caller asked for more
 * steps than the sequence has room for).
 */
export function nextDecodeStep(batch: StepBatch, ids: Int32Array, blockSize: number): StepBatch {
  const rows = batch.tokenIds.length;
  const positions = new Int32Array(rows);
  const slots = new Int32Array(rows);
  const sequences = batch.sequences.map((s, i) => {
    const pos = batch.positions[i] + 1;
    if (Math.floor(pos / blockSize) >= s.blockTable.length) {
      throw new BackendError(`chained decode: row ${i} reaches position ${pos}, past its ${s.blockTable.length} KV-cache blocks`, { expected: `positions below ${s.blockTable.length * blockSize}`, found: String(pos) });
    }
    positions[i] = pos;
    slots[i] = slotOf(s.blockTable, blockSize, pos);
    return { ...s, contextLength: s.contextLength + 1 };
  });
  return { tokenIds: Int32Array.from(ids.subarray(0, rows)), positions, slots, sequences, selectedRows: batch.selectedRows };
}

/** Checks a chained call: a chainable decode step and a whole number of steps ≥ 1. */
export function checkChain(batch: StepBatch, steps: number): void {
  if (!Number.isInteger(steps) || steps < 1) throw new BackendError('a chained decode call takes a whole number of steps ≥ 1', { expected: 'an integer ≥ 1', found: String(steps) });
  if (!isChainableDecode(batch)) {
    throw new BackendError('a chained decode call takes decode steps only', { expected: 'one row a sequence, in order, every row selected', found: `${batch.tokenIds.length} rows, ${batch.sequences.length} sequences, ${batch.selectedRows.length} selected` });
  }
}

/** Checks a runSampleSteps call: a chainable decode step, and every step's rows fit it (checkSampleRows). */
export function checkSampleChain(batch: StepBatch, rows: readonly (readonly SampleRow[])[]): void {
  checkChain(batch, rows.length);
  for (const r of rows) checkSampleRows(batch, r);
}

/** `steps` steps from `batch`, each step's ids (from `pick`) fed into the next; [steps, rows] ids. */
async function chain(batch: StepBatch, steps: number, blockSize: number, pick: (step: StepBatch, j: number) => Promise<Int32Array>): Promise<Int32Array> {
  const rows = batch.tokenIds.length;
  const out = new Int32Array(steps * rows);
  let step = batch;
  for (let j = 0; j < steps; j++) {
    if (j > 0) step = nextDecodeStep(step, out.subarray((j - 1) * rows, j * rows), blockSize);
    out.set(await pick(step, j), j * rows);
  }
  return out;
}

/**
 * runArgmaxSteps on the host: `steps` calls of the program's runArgmax (or run() and the greedy pick over
 * its logits), each step's ids fed into the next. Returns [steps, rows] ids, step after step.
 */
export async function chainArgmaxSteps(program: Program, batch: StepBatch, steps: number, blockSize: number): Promise<Int32Array> {
  checkChain(batch, steps);
  const host = new HostRowSampler();
  const greedy = new Array<SampleRow>(batch.tokenIds.length).fill(GREEDY_ROW);
  return chain(batch, steps, blockSize, async (step) => {
    if (program.runArgmax) return program.runArgmax(step);
    const logits = await program.run(step);
    return host.pick(logits, greedy, logits.length / greedy.length);
  });
}

/**
 * runSampleSteps on the host: a runSample call a step with that step's rows (or run() and core's host pick
 * over its logits), each step's ids fed into the next. Returns [steps, rows] ids, step after step.
 */
export async function chainSampleSteps(program: Program, batch: StepBatch, rows: readonly (readonly SampleRow[])[], blockSize: number): Promise<Int32Array> {
  checkSampleChain(batch, rows);
  const host = new HostRowSampler();
  return chain(batch, rows.length, blockSize, async (step, j) => {
    if (program.runSample) return program.runSample(step, rows[j]);
    const logits = await program.run(step);
    return host.pick(logits, rows[j], logits.length / rows[j].length);
  });
}
