// ExpertPlacement plugins: which rank holds each expert of a layer.
import { CONTRACT_VERSION, ConfigError, type ExpertPlacement } from '@zinfer/core';

type Placement = ExpertPlacement & { contractVersion: number };

/** Experts in blocks: rank r holds experts [r·E/R, (r+1)·E/R). */
export function contiguousPlacement(): Placement {
  return { name: 'contiguous', contractVersion: CONTRACT_VERSION, place: ({ numExperts, ranks }) => Int32Array.from({ length: numExperts }, (_, e) => Math.floor((e * ranks) / numExperts)) };
}

/** Expert e on rank e mod R, so neighbouring experts (often co-activated) land on different ranks. */
export function roundRobinPlacement(): Placement {
  return { name: 'round-robin', contractVersion: CONTRACT_VERSION, place: ({ numExperts, ranks }) => Int32Array.from({ length: numExperts }, (_, e) => e % ranks) };
}

/**
 * Balances the tokens each rank's experts see: the busiest experts first, each onto the rank with the least
 * load so far, no rank holding more than ⌈E/R⌉ experts (memory stays balanced). `load(layer)` gives the
 * tokens routed to each expert of a layer (routing statistics gathered while serving); layers without
 * statistics fall back to contiguous placement.
 */
export function loadAwarePlacement(opts: { load: (layer: number) => Float64Array | undefined }): Placement {
  return {
    name: 'load-aware',
    contractVersion: CONTRACT_VERSION,
    place({ layer, numExperts, ranks, load }) {
      const stats = load ?? opts.load(layer);
      if (!stats) return contiguousPlacement().place({ layer, numExperts, ranks });
      if (stats.length !== numExperts) throw new ConfigError('routing statistics do not match the layer', { field: 'load', expected: `${numExperts} experts`, found: `${stats.length}` });
      const capacity = Math.ceil(numExperts / ranks);
      const owner = new Int32Array(numExperts);
      const rankLoad = new Float64Array(ranks);
      const count = new Int32Array(ranks);
      const order = Array.from({ length: numExperts }, (_, e) => e).sort((a, b) => stats[b] - stats[a] || a - b);
      for (const e of order) {
        let best = -1;
        for (let r = 0; r < ranks; r++) if (count[r] < capacity && (best < 0 || rankLoad[r] < rankLoad[best])) best = r;
        owner[e] = best;
        rankLoad[best] += stats[e];
        count[best]++;
      }
      return owner;
    },
  };
}
