// Load-aware re-planning from routing statistics gathered while serving (Engine.expertLoad): an expert
// parallel strategy whose placement can be re-planned from the counts, and the summary /metrics shows.
import type { ExpertPlacement, ParallelStrategy } from '@zinfer/core';
import { expertParallel } from './expert-parallel.js';
import { resolveLayout, type ExpertParallelOptions } from './options.js';
import { loadAwarePlacement } from './placements.js';

/** Expert parallelism that re-plans its placement from routing statistics (the server's replan route). */
export interface ExpertReplanner {
  /** The strategy for the current placement (give it to createEngine's `parallel`). */
  strategy(): ParallelStrategy;
  /**
   * Expert group holding each expert of each MoE layer under the current placement (`experts[l]` experts
   * in layer l); a group is one rank, or `tensor` ranks when experts are sliced.
   */
  owners(experts: readonly number[]): Int32Array[];
  /**
   * The strategy a load-aware placement of `load` (tokens per expert per MoE layer, a snapshot) gives, and
   * `adopt()` to make it current once the engine runs it (a failed relaunch keeps the old placement).
   */
  replan(load: readonly Float64Array[]): { strategy: ParallelStrategy; placement: ExpertPlacement; adopt(): void };
  readonly placement: ExpertPlacement;
}

export function expertReplanner(opts: ExpertParallelOptions): ExpertReplanner {
  let placement = opts.placement;
  return {
    get placement() {
      return placement;
    },
    strategy: () => expertParallel({ ...opts, placement }),
    owners: (experts) => experts.map((numExperts, layer) => placement.place({ layer, numExperts, ranks: resolveLayout(opts, numExperts).groups })),
    replan(load) {
      const snapshot = load.map((l) => l.slice());
      const next = loadAwarePlacement({ load: (layer) => snapshot[layer] });
      return { strategy: expertParallel({ ...opts, placement: next }), placement: next, adopt: () => void (placement = next) };
    },
  };
}

/** Per-layer imbalance of routed tokens: the busiest expert's count over the mean (1 = balanced; 0 when idle). */
export function expertImbalance(load: Float64Array): number {
  let sum = 0;
  let max = 0;
  for (const x of load) {
    sum += x;
    max = Math.max(max, x);
  }
  return sum > 0 ? max / (sum / load.length) : 0;
}

/** Per-layer imbalance of the expert groups: the busiest group's tokens over the mean group's, under `owner`. */
export function rankImbalance(load: Float64Array, owner: Int32Array, groups: number): number {
  const perGroup = new Float64Array(groups);
  load.forEach((x, e) => (perGroup[owner[e]] += x));
  return expertImbalance(perGroup);
}
