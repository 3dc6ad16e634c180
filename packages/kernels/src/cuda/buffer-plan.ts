// Assigns the graph's float values to a few reusable device buffers ("slots") by liveness, so a 32-layer
// model needs a handful of activation buffers rather than hundreds. A node's output never shares a slot
// with one of its inputs: kernels read inputs while they write the output. Fused launches read values at
// other nodes than the graph says (a GEMV with a fused norm reads the norm's input where the linear runs)
// and write some earlier (q, k and v all where q's linear runs): `extraUses` extends those values' lives
// and `earlyDefs` starts them sooner, so one plan serves the fused and the unfused schedule.
import type { Graph, ValueId } from '@zinfer/core';

export interface BufferPlan {
  /** Slot of each value id; -1 for int values (token ids, positions), which live in the step's metadata. */
  slotOf: Int32Array;
  /** Bytes a row of each slot needs: the widest value it holds × that value's element size. */
  slotRowBytes: number[];
}

/** [value, node index]: the value is read by whatever launches at that node. */
export type ExtraUse = readonly [ValueId, number];
/** [value, node index]: the value may be written by whatever launches at that node (before its own). */
export type EarlyDef = readonly [ValueId, number];

export function planBuffers(
  graph: Graph, extraUses: readonly ExtraUse[] = [], elementBytes: (v: ValueId) => number = () => 4, earlyDefs: readonly EarlyDef[] = [],
): BufferPlan {
  const n = graph.values.length;
  const lastUse = new Int32Array(n).fill(-1);
  graph.nodes.forEach((node, i) => {
    lastUse[node.output] = Math.max(lastUse[node.output], i);
    for (const v of Object.values(node.inputs)) lastUse[v] = Math.max(lastUse[v], i);
  });
  for (const [v, i] of extraUses) lastUse[v] = Math.max(lastUse[v], i);
  lastUse[graph.output] = graph.nodes.length; // the step's result outlives every node

  // Values whose life ends at each node (the graph's own inputs and the extra uses alike).
  const endsAt: ValueId[][] = graph.nodes.map(() => []);
  for (let v = 0; v < n; v++) if (lastUse[v] >= 0 && lastUse[v] < graph.nodes.length) endsAt[lastUse[v]].push(v);

  const startsAt: ValueId[][] = graph.nodes.map((node) => [node.output]);
  for (const [v, i] of earlyDefs) startsAt[i].push(v);

  const slotOf = new Int32Array(n).fill(-1);
  const slotRowBytes: number[] = [];
  const free: number[] = [];
  graph.nodes.forEach((_, i) => {
    for (const v of startsAt[i]) if (slotOf[v] < 0) slotOf[v] = take(free, slotRowBytes, graph.values[v].width * elementBytes(v));
    for (const v of endsAt[i]) if (slotOf[v] >= 0) free.push(slotOf[v]);
  });
  return { slotOf, slotRowBytes };
}

/** The free slot that fits `width` (bytes a row) most tightly, else the widest free one grown to fit, else a new one. */
function take(free: number[], widths: number[], width: number): number {
  let best = -1;
  for (let i = 0; i < free.length; i++) {
    const w = widths[free[i]];
    if (best === -1) best = i;
    else {
      const bw = widths[free[best]];
      const fits = w >= width;
      const bestFits = bw >= width;
      if ((fits && (!bestFits || w < bw)) || (!fits && !bestFits && w > bw)) best = i;
    }
  }
  if (best === -1) {
    widths.push(width);
    return widths.length - 1;
  }
  const slot = free.splice(best, 1)[0];
  widths[slot] = Math.max(widths[slot], width);
  return slot;
}
