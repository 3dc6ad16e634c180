// An in-memory WeightStream for backend tests: every layer's weights stream (from plain host memory, with
// an optional delay standing in for a slow tier), the rest stays resident. It checks the contract's rules
// as a program uses it: acquires in group order within a step, no acquire of a group still held.
import type { StreamEvent, StreamedWeight, WeightSource, WeightStream } from '../contracts.js';
import type { Graph } from '../graph.js';
import type { WeightName } from '../ops.js';
import { layerWeightGroups } from '../weight-groups.js';

export interface MemoryStream extends WeightStream {
  /** The weights a program compiles as resident: everything outside the streamed groups. */
  readonly resident: WeightSource;
  readonly events: StreamEvent[];
  /** Acquires so far, in order (for tests of the prefetch order). */
  readonly acquired: number[];
}

export function memoryWeightStream(graph: Graph, weights: WeightSource, opts: { prefetch?: number; delayMs?: number } = {}): MemoryStream {
  const groups = layerWeightGroups(graph).map((g) => g.names);
  const streamed = new Set<WeightName>(groups.flat());
  const held = new Set<number>();
  const events: StreamEvent[] = [];
  const acquired: number[] = [];
  const resident: WeightSource = {
    names: () => weights.names().filter((n) => !streamed.has(n)),
    get: (name) => {
      if (streamed.has(name)) throw new Error(`weight ${name} is streamed: the program must acquire it, not load it at compile time`);
      return weights.get(name);
    },
  };
  return {
    groups,
    prefetch: opts.prefetch ?? 1,
    resident,
    events,
    acquired,
    async acquire(group) {
      if (!(group >= 0 && group < groups.length)) throw new Error(`acquire of group ${group}: the stream has ${groups.length}`);
      if (held.has(group)) throw new Error(`group ${group} acquired twice without release`);
      held.add(group);
      acquired.push(group);
      const start = performance.now();
      if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
      const out: StreamedWeight[] = groups[group].map((name) => ({ name, tensor: weights.get(name) }));
      events.push({ group, kind: 'fetch', start, end: performance.now() });
      return out;
    },
    release(group) {
      if (!held.delete(group)) throw new Error(`release of group ${group}, which is not held`);
    },
    recordCompute(group, start, end) {
      events.push({ group, kind: 'compute', start, end });
    },
  };
}
