// Where each float value of a step lives in the activation arena. Sizes depend on the step's row counts,
// so the plan is made per (token rows, selected rows) and cached; a value's buffer is reused by later
// values once its last reader has run (values are written once, so no node reads and writes one buffer).
import type { Graph, ValueId } from '@zinfer/core';
import { nodeInputs, nodeOutputs, type CpuNode } from './fuse.js';
import { alignUp, SLACK } from './heap.js';

export interface ArenaPlan {
  /** Byte offset of each float value in the arena (−1: int value or not computed). */
  offsets: Float64Array;
  /** Arena bytes the plan needs. */
  bytes: number;
}

export class ArenaPlanner {
  private readonly lastRead: Int32Array;
  private cache: { key: string; plan: ArenaPlan } | null = null;

  constructor(private readonly graph: Graph, private readonly nodes: readonly CpuNode[]) {
    const n = graph.values.length;
    this.lastRead = new Int32Array(n).fill(-1);
    nodes.forEach((node, i) => {
      for (const v of nodeInputs(node)) this.lastRead[v] = Math.max(this.lastRead[v], i);
    });
    this.lastRead[graph.output] = nodes.length; // the step's result is read after the last node
  }

  plan(rows: number, selected: number): ArenaPlan {
    const key = `${rows}/${selected}`;
    if (this.cache?.key === key) return this.cache.plan;
    const { values } = this.graph;
    const offsets = new Float64Array(values.length).fill(-1);
    const free = new FreeList();
    const ending: ValueId[][] = this.nodes.map(() => []);
    this.nodes.forEach((node, i) => {
      for (const v of nodeOutputs(node)) {
        const info = values[v];
        const size = alignUp((info.rows === 'selected' ? selected : rows) * info.width * 4 + SLACK);
        offsets[v] = free.take(size);
        // A value nobody reads is freed right after its node (it still needs its buffer while written).
        ending[Math.min(Math.max(this.lastRead[v], i), this.nodes.length - 1)].push(v);
      }
      for (const v of ending[i]) if (v !== this.graph.output) free.give(offsets[v], alignUp((values[v].rows === 'selected' ? selected : rows) * values[v].width * 4 + SLACK));
    });
    const plan = { offsets, bytes: free.highWater };
    this.cache = { key, plan };
    return plan;
  }
}

/** First-fit allocation of byte ranges, coalescing freed neighbours. */
class FreeList {
  private readonly spans: { at: number; size: number }[] = [];
  highWater = 0;

  take(size: number): number {
    for (let i = 0; i < this.spans.length; i++) {
      const s = this.spans[i];
      if (s.size < size) continue;
      const at = s.at;
      if (s.size === size) this.spans.splice(i, 1);
      else this.spans[i] = { at: at + size, size: s.size - size };
      return at;
    }
    // Grow: extend a free span that ends at the high-water mark, else start a new one there.
    const last = this.spans[this.spans.length - 1];
    if (last && last.at + last.size === this.highWater) {
      this.spans.pop();
      this.highWater = last.at + size;
      return last.at;
    }
    const at = this.highWater;
    this.highWater += size;
    return at;
  }

  give(at: number, size: number): void {
    let i = 0;
    while (i < this.spans.length && this.spans[i].at < at) i++;
    this.spans.splice(i, 0, { at, size });
    // Coalesce with the next, then the previous span.
    const next = this.spans[i + 1];
    if (next && at + size === next.at) this.spans.splice(i, 2, { at, size: size + next.size });
    const prev = this.spans[i - 1];
    const cur = this.spans[i];
    if (prev && prev.at + prev.size === cur.at) this.spans.splice(i - 1, 2, { at: prev.at, size: prev.size + cur.size });
  }
}
