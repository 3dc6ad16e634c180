// --tp, --pp and --ep as the engine config's `parallel` strategy.
import { ConfigError, type ParallelStrategy } from '@zinfer/core';
import { contiguousPlacement, expertParallel } from '@zinfer/moe';
import { pipelineParallel, tensorParallel } from '@zinfer/parallel';

export interface ParallelFlags {
  tp: number;
  pp: number;
  ep: number;
}

/** The strategy the flags ask for, or undefined for a single device. */
export function parallelFromFlags({ tp, pp, ep }: ParallelFlags): ParallelStrategy | undefined {
  if (ep > 1) {
    if (tp > 1 || pp > 1) throw new ConfigError('--ep does not combine with --tp or --pp yet', { field: 'ep', expected: '--tp 1 --pp 1 with --ep', found: `--tp ${tp} --pp ${pp} --ep ${ep}` });
    return expertParallel({ size: ep, placement: contiguousPlacement() });
  }
  if (pp > 1) return pipelineParallel({ stages: pp, tensorSize: tp });
  if (tp > 1) return tensorParallel({ size: tp });
  return undefined;
}
