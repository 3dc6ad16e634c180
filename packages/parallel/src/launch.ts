// Starting a plan's ranks, for strategies defined in other packages (expert parallelism in @zinfer/moe):
// the same grid launcher tensorParallel and pipelineParallel use.
import { ConfigError, type LaunchArgs, type Program, type StepBatch } from '@zinfer/core';
import { launchInline } from './launch/inline.js';
import { launchWorkers } from './launch/workers.js';

export interface LaunchOptions {
  /** 'workers' (default): one worker thread per rank; 'inline': all ranks on this thread. */
  ranks?: 'workers' | 'inline';
  /** Micro-batches per step (pipeline plans); default 1. */
  microBatches?: (batch: StepBatch) => number;
  /** Worker ranks: a step not finished by every rank within this many ms fails as a hung rank (default 30 000). */
  timeoutMs?: number;
}

export function launchPlan(args: LaunchArgs, opts: LaunchOptions = {}): Promise<Program> {
  const micro = opts.microBatches ?? (() => 1);
  if (args.backend.deviceCollectives && opts.ranks === 'inline') {
    return Promise.reject(new ConfigError(`backend ${args.backend.name} runs one rank per device, each in its own thread`, { field: 'parallel.ranks', expected: "'workers'", found: "'inline'" }));
  }
  return opts.ranks === 'inline' || args.plan.ranks.length === 1 ? launchInline(args, micro) : launchWorkers(args, micro, { timeoutMs: opts.timeoutMs });
}
