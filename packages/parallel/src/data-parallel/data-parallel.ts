// dataParallel({ size }): ZeRO-Inference's data-parallel ranks. Every rank runs the whole model on its
// share of the step's sequences; with `offload` in the engine config the ranks fetch each streamed layer
// together (each 1/size of it, then an all-gather), so the host tier holds the model once, not size times.
import { CONTRACT_VERSION, ConfigError, type Graph, type LaunchArgs, type ParallelPlan, type ParallelStrategy } from '@zinfer/core';
import { launchDataParallel, type DataParallelProgram } from './launch-data-parallel.js';
import { launchDataParallelWorkers } from './worker-ranks.js';

export interface DataParallelOptions {
  /** Number of ranks; each runs the whole model on its own sequences. */
  size: number;
  /** 'inline': every rank on this thread (reference, cpu); 'workers': one worker thread each (default for CUDA, required there). */
  ranks?: 'inline' | 'workers';
  /** Worker ranks: a step not finished within this many ms breaks the program (default 120 000: streamed steps are long). */
  timeoutMs?: number;
}

export type DataParallelStrategy = ParallelStrategy & { contractVersion: number; readonly offload: true };

export function dataParallel(opts: DataParallelOptions): DataParallelStrategy {
  const size = opts?.size;
  if (!Number.isSafeInteger(size) || size < 1) throw new ConfigError('dataParallel needs a positive integer size', { field: 'parallel.size', expected: 'an integer ≥ 1', found: String(size) });
  return {
    name: `data-parallel(${size})`,
    contractVersion: CONTRACT_VERSION,
    ranks: size,
    offload: true,
    plan: (graph: Graph): ParallelPlan => ({ ranks: Array.from({ length: size }, () => ({ graph, shards: [] })), stages: 1 }),
    launch: (args: LaunchArgs): Promise<DataParallelProgram> => {
      const ranks = opts.ranks ?? (args.backend.deviceCollectives ? 'workers' : 'inline');
      if (ranks === 'inline' && args.backend.deviceCollectives) {
        return Promise.reject(new ConfigError(`backend ${args.backend.name} runs one rank per device, each in its own thread`, { field: 'parallel.ranks', expected: "'workers'", found: "'inline'" }));
      }
      return ranks === 'workers' ? launchDataParallelWorkers(args, size, opts.timeoutMs ?? 120_000) : launchDataParallel(args, size);
    },
  };
}
