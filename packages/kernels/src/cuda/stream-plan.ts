// Where a streamed program keeps each streamed weight and when a step needs it, decided at compile time.
// Every group gets one layout inside a slot (device weights as device-weights.ts lays them out: matrices in
// the activation dtype, or in f32 mode in the dtype of the resident matrices; vectors f32; 256-byte
// aligned), and a window of node indices: from the first node that may read one of its weights to the last.
// A fused launch reads its members' weights where it runs (exec-plan's `at`), an unfused one at the node
// itself; which one happens depends on the step's rows, so the window covers both.
import { BackendError, type FloatDType, type Graph, type WeightName, type WeightStream } from '@zinfer/core';
import type { ExecPlan } from './exec-plan.js';
import { dtypeBytes } from './step-context.js';
import { shardSlotLayout } from './shard-plan.js';

const ALIGN = 256;

export interface SlotEntry {
  offset: number;
  dtype: FloatDType;
  shape: readonly number[];
  bytes: number;
}

export interface StreamGroup {
  index: number;
  /** Names in the stream's order, with their place in the slot. */
  layout: Map<WeightName, SlotEntry>;
  bytes: number;
  /** First and last node index that may read one of the group's weights (-1: no node reads them). */
  first: number;
  last: number;
  /** Slot it is copied into (its rank among the read groups, modulo the slots); -1 when no node reads it. */
  slot: number;
}

export interface StreamPlan {
  groups: StreamGroup[];
  /** Device slots: prefetch + 1, each `slotBytes` (the largest group). */
  slots: number;
  slotBytes: number;
  /** The groups some node reads, in step order: the order they are acquired. */
  order: number[];
  /** Node index → groups whose window opens there (they must be on the device before it). */
  opensAt: Map<number, number[]>;
  /** Node index → groups whose window closes there (their slot is free after it). */
  closesAt: Map<number, number[]>;
}

/** A streamed weight's dtype on the device: vectors f32, matrices in `act`, or in f32 mode as the resident matrices are stored. */
export function streamedDtype(shape: readonly number[], act: FloatDType, matrixDtype: FloatDType): FloatDType {
  return shape.length === 1 ? 'f32' : act === 'f32' ? matrixDtype : act;
}

/** Every node index at which a weight may be read, per weight. */
function usePoints(graph: Graph, exec: ExecPlan): Map<WeightName, number[]> {
  const uses = new Map<WeightName, number[]>();
  const add = (name: string, i: number) => {
    if (!graph.weights.has(name)) return;
    let list = uses.get(name);
    if (!list) uses.set(name, (list = []));
    list.push(i);
  };
  graph.nodes.forEach((node, i) => {
    for (const value of Object.values(node.attrs as Record<string, unknown>)) {
      const names = typeof value === 'string' ? [value] : Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
      for (const name of names) {
        add(name, i);
        const fused = exec.groupOf.get(i);
        if (fused) add(name, fused.at);
      }
    }
    // A norm run by its router's launch reads its weight there.
    const router = exec.routerNormCovers.get(i);
    if (router !== undefined && node.op === 'rmsNorm') add(node.attrs.weight, router);
    // Two lookups summed in one launch read their tables where the add runs.
    const sum = node.op === 'add' ? exec.embeddingSums.get(node) : undefined;
    if (sum) for (const lookup of [sum.a, sum.b]) add(lookup.attrs.table, i);
  });
  return uses;
}

export function planStream(graph: Graph, exec: ExecPlan, stream: WeightStream, act: FloatDType, matrixDtype: FloatDType): StreamPlan {
  const prefetch = stream.prefetch;
  if (!(Number.isSafeInteger(prefetch) && prefetch >= 0)) {
    throw new BackendError('stream prefetch is not a non-negative integer', { field: 'stream.prefetch', expected: 'an integer ≥ 0', found: String(prefetch) });
  }
  const uses = usePoints(graph, exec);
  const owner = new Map<WeightName, number>();
  const groups = stream.groups.map((names, index): StreamGroup => {
    const layout = new Map<WeightName, SlotEntry>();
    let bytes = 0;
    let [first, last] = [Infinity, -1];
    for (const name of names) {
      const info = graph.weights.get(name);
      if (!info) throw new BackendError(`streamed weight ${name} (group ${index}) is not a weight of the graph`, { tensor: name });
      if (owner.has(name)) throw new BackendError(`streamed weight ${name} is in groups ${owner.get(name)} and ${index}`, { tensor: name });
      owner.set(name, index);
      const dtype = streamedDtype(info.shape, act, matrixDtype);
      const size = info.shape.reduce((a, b) => a * b, 1) * dtypeBytes(dtype);
      layout.set(name, { offset: bytes, dtype, shape: info.shape, bytes: size });
      bytes += Math.ceil(size / ALIGN) * ALIGN;
      for (const i of uses.get(name) ?? []) [first, last] = [Math.min(first, i), Math.max(last, i)];
    }
    // A cooperative fetch fills the slot with the group's image as it is, so the image's layout is the slot's.
    const slot = stream.shard ? shardSlotLayout(graph, stream.shard, index, names, act, matrixDtype) : { layout, bytes };
    return { index, layout: slot.layout, bytes: slot.bytes, first: last < 0 ? -1 : first, last, slot: -1 };
  });
  const plan: StreamPlan = { groups, slots: prefetch + 1, slotBytes: Math.max(ALIGN, ...groups.map((g) => g.bytes)), order: [], opensAt: new Map(), closesAt: new Map() };
  const used = groups.filter((g) => g.last >= 0);
  used.forEach((g, k) => {
    const prev = used[k - 1];
    if (prev && prev.first > g.first) throw new BackendError(`stream group ${g.index} is read before group ${prev.index}: groups must come in the order a step reads them`, { field: 'stream.groups' });
    // The group that reuses g's slot is fetched once g's last reader is enqueued, so it must open later.
    const next = used[k + plan.slots];
    if (next && next.first <= g.last) {
      throw new BackendError(`stream group ${next.index} is read (node ${next.first}) before group ${g.index} is done (node ${g.last}), and they share one of ${plan.slots} slots`, { field: 'stream.prefetch', expected: `more than ${prefetch}`, found: String(prefetch) });
    }
    g.slot = k % plan.slots;
    plan.order.push(g.index);
    push(plan.opensAt, g.first, g.index);
    push(plan.closesAt, g.last, g.index);
  });
  return plan;
}

function push(map: Map<number, number[]>, key: number, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
