// dataParallel({ size }): ZeRO-Inference's data-parallel ranks. Every rank runs the whole model on its
// share of the step's sequences; with `offload` in the engine config the ranks fetch each streamed layer
// together (each 1/size of it, then an all-gather), so the host tier holds the model once, not size times.
import { CONTRACT_VERSION, ConfigError, type Graph, type LaunchArgs, type ParallelPlan, type ParallelStrategy } from '@zinfer/core';
import { launchDataParallel, type DataParallelProgram } from './launch-data-parallel.js';

export interface DataParallelOptions {
  /** Number of ranks; each runs the whole model on its own sequences. */
  size: number;
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
      if (args.backend.deviceCollectives) {
        return Promise.reject(new ConfigError(`dataParallel runs its ranks on this thread; backend ${args.backend.name} needs one thread per device`, { field: 'parallel', expected: 'the reference or cpu backend (CUDA ranks: scripts/gpu-offload-multi.mjs)', found: args.backend.name }));
      }
      return launchDataParallel(args, size);
    },
  };
}
