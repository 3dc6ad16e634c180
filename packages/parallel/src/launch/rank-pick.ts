// Token picks on the output rank: a launched plan's steps can come back as token ids (greedy argmax, or a
// sampled pick per row) instead of [rows, vocab] logits, so neither the GPU nor the worker message copies
// the logits. The output rank uses its program's runArgmax / runSample where it has them (on the device),
// else run() and core's host pick over the logits in its own thread: the same ids either way. The other
// ranks run the step without its output (runRank).
import { checkSampleRows, GREEDY_ROW, HostRowSampler, type Program, type RunOptions, type SampleRow, type StepBatch } from '@zinfer/core';

export type RankPick = { kind: 'argmax' } | { kind: 'sample'; rows: readonly SampleRow[] };

/** One micro-batch on the output rank, picked. */
export async function runPicked(program: Program, batch: StepBatch, pick: RankPick, host: HostRowSampler): Promise<Int32Array> {
  const rows = batch.selectedRows.length;
  if (pick.kind === 'argmax' && program.runArgmax) return program.runArgmax(batch);
  if (pick.kind === 'sample' && program.runSample) return program.runSample(batch, pick.rows);
  const logits = await program.run(batch);
  if (rows === 0) return new Int32Array(0);
  return host.pick(logits, pick.kind === 'sample' ? pick.rows : new Array<SampleRow>(rows).fill(GREEDY_ROW), logits.length / rows);
}

/**
 * One micro-batch on one rank: the output rank answers (picked when the step has a pick, else its
 * logits); every other rank only runs it, without copying its output off the device where its program can
 * (at 64 rows a tensor-parallel rank's gathered logits are 8 MB a step).
 */
export async function runRank(program: Program, batch: StepBatch, output: boolean, pick: RankPick | undefined, host: HostRowSampler): Promise<Float32Array | Int32Array | null> {
  if (output) return pick ? runPicked(program, batch, pick, host) : program.run(batch);
  if (program.runWithoutOutput) await program.runWithoutOutput(batch);
  else await program.run(batch);
  return null;
}

/** A step's pick cut along its micro-batches (`parts`: splitBatch's, whose selected rows follow the step's in order). */
export function splitPick(pick: RankPick | undefined, parts: readonly StepBatch[]): (RankPick | undefined)[] {
  if (pick?.kind !== 'sample') return parts.map(() => pick);
  let at = 0;
  return parts.map((p) => {
    const n = p.selectedRows.length;
    at += n;
    return { kind: 'sample', rows: pick.rows.slice(at - n, at) };
  });
}

/** A launched program's step: logits without a pick, the output rank's token ids with one. */
export type PickStep = (batch: StepBatch, pick?: RankPick, options?: RunOptions) => Promise<Float32Array | Int32Array>;

/** run, runArgmax and runSample of a launched program over its `step` (sample rows checked before the step runs). */
export function pickingProgram(step: PickStep): Required<Pick<Program, 'run' | 'runArgmax' | 'runSample'>> {
  return {
    run: (batch, options) => step(batch, undefined, options) as Promise<Float32Array>,
    runArgmax: (batch, options) => step(batch, { kind: 'argmax' }, options) as Promise<Int32Array>,
    runSample: async (batch, rows, options) => {
      checkSampleRows(batch, rows);
      return (await step(batch, { kind: 'sample', rows }, options)) as Int32Array;
    },
  };
}
