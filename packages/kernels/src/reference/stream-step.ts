// Weight streaming in the reference program. Before the first node reading a group's weights the step
// acquires that group and the next `prefetch` ones (in order, each once, never more than prefetch + 1
// held), so their fetches run while this group computes; after the group's last node it releases it.
import { fetchGraphWeight, type Graph, type HostTensor, type StreamedWeight, type WeightName, type WeightStream } from '@zinfer/core';

/** Where each stream group is first and last read in a graph's node order. */
export interface StreamSchedule {
  startsAt: Map<number, number[]>;
  endsAt: Map<number, number[]>;
}

export function streamSchedule(graph: Graph, stream: WeightStream): StreamSchedule {
  const groupOf = new Map<WeightName, number>();
  stream.groups.forEach((names, g) => names.forEach((n) => groupOf.set(n, g)));
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  graph.nodes.forEach((node, i) => {
    for (const w of nodeWeightNames(node.attrs)) {
      const g = groupOf.get(w);
      if (g === undefined) continue;
      if (!first.has(g)) first.set(g, i);
      last.set(g, i);
    }
  });
  const startsAt = new Map<number, number[]>();
  const endsAt = new Map<number, number[]>();
  for (const [g, i] of first) startsAt.set(i, [...(startsAt.get(i) ?? []), g]);
  for (const [g, i] of last) endsAt.set(i, [...(endsAt.get(i) ?? []), g]);
  return { startsAt, endsAt };
}

/** One run's view of the weights: the resident map plus the groups it holds right now. */
export class StreamStep {
  private readonly pending = new Map<number, Promise<readonly StreamedWeight[]>>();
  private readonly live = new Map<WeightName, HostTensor>();
  private readonly started = new Map<number, number>();
  private next = 0;

  constructor(private readonly graph: Graph, private readonly stream: WeightStream, private readonly schedule: StreamSchedule, private readonly resident: ReadonlyMap<WeightName, HostTensor>) {}

  get(name: WeightName): HostTensor | undefined {
    return this.live.get(name) ?? this.resident.get(name);
  }

  async before(node: number): Promise<void> {
    for (const g of this.schedule.startsAt.get(node) ?? []) {
      this.acquireThrough(g);
      const weights = await this.pending.get(g)!;
      const source = { names: () => weights.map((w) => w.name), get: (n: WeightName) => weights.find((w) => w.name === n)!.tensor };
      for (const w of weights) this.live.set(w.name, fetchGraphWeight(this.graph, source, w.name));
      this.started.set(g, performance.now());
    }
  }

  after(node: number): void {
    for (const g of this.schedule.endsAt.get(node) ?? []) {
      for (const n of this.stream.groups[g]) this.live.delete(n);
      this.pending.delete(g);
      this.stream.release(g);
      this.stream.recordCompute(g, this.started.get(g)!, performance.now());
    }
  }

  /** Releases whatever this run still holds (after a failure mid-step). */
  async abort(): Promise<void> {
    for (const [g, p] of this.pending) {
      const ok = await p.then(() => true, () => false);
      if (ok) this.stream.release(g);
    }
    this.pending.clear();
    this.live.clear();
  }

  /** Starts acquiring groups up to `group` + prefetch, keeping at most prefetch + 1 held. */
  private acquireThrough(group: number): void {
    const oldest = Math.min(group, ...this.pending.keys());
    const limit = Math.min(oldest + this.stream.prefetch, this.stream.groups.length - 1);
    for (; this.next <= Math.max(group, limit); this.next++) {
      const p = this.stream.acquire(this.next);
      p.catch(() => {}); // a prefetch that fails is reported when its group is awaited
      this.pending.set(this.next, p);
    }
  }
}

function nodeWeightNames(attrs: object): string[] {
  const out: string[] = [];
  for (const v of Object.values(attrs as Record<string, unknown>)) {
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) for (const x of v) if (typeof x === 'string') out.push(x);
      else if (x && typeof x === 'object') out.push(...nodeWeightNames(x));
  }
  return out;
}
