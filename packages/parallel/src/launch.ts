// Starting a plan's ranks, for strategies defined in other packages (expert parallelism in @zinfer/moe):
// the same grid launcher tensorParallel and pipelineParallel use.
import type { LaunchArgs, Program, StepBatch } from '@zinfer/core';
import { launchInline } from './launch/inline.js';
import { launchWorkers } from './launch/workers.js';

export interface LaunchOptions {
  /** 'workers' (default): one worker thread per rank; 'inline': all ranks on this thread. */
  ranks?: 'workers' | 'inline';
  /** Micro-batches per step (pipeline plans); default 1. */
  microBatches?: (batch: StepBatch) => number;
}

export function launchPlan(args: LaunchArgs, opts: LaunchOptions = {}): Promise<Program> {
  const micro = opts.microBatches ?? (() => 1);
  return opts.ranks === 'inline' || args.plan.ranks.length === 1 ? launchInline(args, micro) : launchWorkers(args, micro);
}
