// Token picks on the output rank: a launched plan's steps can come back as token ids (greedy argmax, or a
// sampled pick per row) instead of [rows, vocab] logits, so neither the GPU nor the worker message copies
// the logits. The output rank uses its program's runArgmax / runSample where it has them (on the device),
// else run() and core's host pick over the logits in its own thread: the same ids either way. The other
// ranks run the step without its output (runRank).
//
// A chained run (Program.runArgmaxSteps: an argmax pick with `steps`; runSampleSteps: a 'sampleSteps' pick,
// each step's rows) is run by every rank: each rank's graph ends with the whole logits (gathered), the same
// on every rank, and a pick is a function of them and the step's draws, so each rank feeds its own pick into
// its next step (on its device where its program can) and the ranks stay in step without the leader.
import { BackendError, chainArgmaxSteps, chainSampleSteps, checkChain, checkSampleChain, checkSampleRows, GREEDY_ROW, HostRowSampler, type ParallelPlan, type Program, type RunOptions, type SampleRow, type StepBatch } from '@zinfer/core';

export type RankPick = { kind: 'argmax'; steps?: number } | { kind: 'sample'; rows: readonly SampleRow[] } | { kind: 'sampleSteps'; rows: readonly (readonly SampleRow[])[] };

/**
 * Whether a plan's ranks can chain decode steps on their own: one stage (a pipeline's first stage would need
 * the last stage's ids), and every rank's graph ending with the same whole output.
 */
export function ranksChain(plan: ParallelPlan): boolean {
  const width = (r: number) => plan.ranks[r].graph.values[plan.ranks[r].graph.output].width;
  return plan.stages === 1 && plan.ranks.every((_, r) => width(r) === width(0));
}

/** Whether a pick is a chained run (runArgmaxSteps / runSampleSteps), of any number of steps. */
function isChained(pick: RankPick | undefined): pick is RankPick {
  return pick?.kind === 'sampleSteps' || (pick?.kind === 'argmax' && pick.steps !== undefined);
}

/** Steps of a chained pick (1: none). */
export function chainSteps(pick: RankPick | undefined): number {
  return pick?.kind === 'argmax' ? (pick.steps ?? 1) : pick?.kind === 'sampleSteps' ? pick.rows.length : 1;
}

/** A chained pick's run on one rank: its program's own chain where it has one, else the host's. */
function runChain(program: Program, batch: StepBatch, pick: RankPick, blockSize: number): Promise<Int32Array> {
  if (pick.kind === 'sampleSteps') return program.runSampleSteps ? program.runSampleSteps(batch, pick.rows) : chainSampleSteps(program, batch, pick.rows, blockSize);
  const steps = chainSteps(pick);
  return program.runArgmaxSteps ? program.runArgmaxSteps(batch, steps) : chainArgmaxSteps(program, batch, steps, blockSize);
}

/** One micro-batch on the output rank, picked. */
export async function runPicked(program: Program, batch: StepBatch, pick: RankPick, host: HostRowSampler): Promise<Int32Array> {
  const rows = batch.selectedRows.length;
  if (pick.kind === 'sampleSteps') throw new BackendError('runPicked takes a pick of one step: a chained run goes through runRank');
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
export async function runRank(program: Program, batch: StepBatch, output: boolean, pick: RankPick | undefined, host: HostRowSampler, blockSize: number): Promise<Float32Array | Int32Array | null> {
  if (isChained(pick)) {
    const ids = await runChain(program, batch, pick, blockSize);
    return output ? ids : null;
  }
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

/**
 * run, runArgmax and runSample of a launched program over its `step` (sample rows checked before the step
 * runs), and runArgmaxSteps / runSampleSteps where its ranks chain (`chain`: ranksChain of its plan).
 */
export function pickingProgram(step: PickStep, chain = false): Required<Pick<Program, 'run' | 'runArgmax' | 'runSample'>> & Pick<Program, 'runArgmaxSteps' | 'runSampleSteps'> {
  return {
    ...(chain
      ? {
          runArgmaxSteps: async (batch: StepBatch, steps: number, options?: RunOptions) => {
            checkChain(batch, steps);
            return (await step(batch, { kind: 'argmax', steps }, options)) as Int32Array;
          },
          runSampleSteps: async (batch: StepBatch, rows: readonly (readonly SampleRow[])[], options?: RunOptions) => {
            checkSampleChain(batch, rows);
            return (await step(batch, { kind: 'sampleSteps', rows }, options)) as Int32Array;
          },
        }
      : {}),
    run: (batch, options) => step(batch, undefined, options) as Promise<Float32Array>,
    runArgmax: (batch, options) => step(batch, { kind: 'argmax' }, options) as Promise<Int32Array>,
    runSample: async (batch, rows, options) => {
      checkSampleRows(batch, rows);
      return (await step(batch, { kind: 'sample', rows }, options)) as Int32Array;
    },
  };
}
