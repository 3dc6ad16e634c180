// The compile-time plan of a weight stream (ZeRO-Inference on the cpu backend): the streamed weights get
// no place of their own in the heap but `prefetch + 1` slots, each as big as the largest group in its
// placed form (linears packed); each group has one fixed layout inside whichever slot it lands in, and a
// node span (first and last node of the rewritten graph that read its weights) that run() schedules by.
import { BackendError, type FloatDType, type Graph, type WeightName, type WeightStream } from '@zinfer/core';
import type { CpuNode } from './fuse.js';
import { alignUp, SLACK, type WasmHeap } from './heap.js';
import { packedBytes, panelBytes } from './pack.js';
import { CHUNK_BYTES } from './slot-copies.js';

/** Where one streamed weight lies inside its group's slot. */
export interface SlotEntry {
  name: WeightName;
  /** Byte offset from the slot's start. */
  offset: number;
  packed: boolean;
}

export interface StreamPlan {
  stream: WeightStream;
  /** Per group, its weights in `stream.groups[g]` order. */
  groups: SlotEntry[][];
  /** The stored dtype every streamed weight must come in (the slots are laid out for it). */
  dtype: FloatDType;
  /** Byte offset of each slot in the heap (prefetch + 1 of them). */
  slots: number[];
  slotBytes: number;
  /** Heap offsets of the buffer linear rows are staged in before packing, and of the pack kernel's arguments. */
  staging: number;
  stagingBytes: number;
  packArgs: number;
  /** Per group: index of the first and the last node (of the rewritten graph) reading its weights. */
  first: Int32Array;
  last: Int32Array;
}

/** Streamed weight → its group; checks that the stream names graph weights, each once, and its prefetch. */
export function streamedWeights(graph: Graph, stream: WeightStream): Map<WeightName, number> {
  const p = stream.prefetch;
  if (!Number.isSafeInteger(p) || p < 0) throw new BackendError('weight stream prefetch is not an integer ≥ 0', { field: 'stream.prefetch', expected: 'an integer ≥ 0', found: String(p) });
  const groupOf = new Map<WeightName, number>();
  stream.groups.forEach((names, g) => {
    for (const name of names) {
      if (!graph.weights.has(name)) throw new BackendError(`weight stream group ${g} names ${name}, which the graph does not read`, { tensor: name, field: `stream.groups[${g}]` });
      if (groupOf.has(name)) throw new BackendError(`weight ${name} is in stream groups ${groupOf.get(name)} and ${g}`, { tensor: name, field: `stream.groups[${g}]`, expected: 'each weight in at most one group' });
      groupOf.set(name, g);
    }
  });
  return groupOf;
}

/**
 * The dtype the streamed weights are expected in: WeightInfo has no dtype, so the resident weights tell
 * (a checkpoint is loaded in one dtype); the program checks every streamed tensor against it.
 */
export function streamDtype(residentDtypes: ReadonlySet<FloatDType>): FloatDType {
  if (residentDtypes.size === 1) return [...residentDtypes][0];
  throw new BackendError('the cpu backend cannot tell the dtype of the streamed weights: it lays out their slots in the dtype of the resident weights, and those ' + (residentDtypes.size ? 'mix dtypes' : 'are none'), {
    field: 'stream', expected: 'resident weights of one dtype (load the model with one dtype)', found: residentDtypes.size ? [...residentDtypes].join(', ') : 'no resident weights',
  });
}

/** Lays out every group, allocates the slots and finds each group's node span. */
export function planStream(graph: Graph, nodes: readonly CpuNode[], stream: WeightStream, groupOf: ReadonlyMap<WeightName, number>, dtype: FloatDType, packed: ReadonlySet<WeightName>, heap: WasmHeap): StreamPlan {
  let slotBytes = 0;
  let staging = CHUNK_BYTES;
  const groups = stream.groups.map((names) => {
    let bytes = 0;
    const entries = names.map((name): SlotEntry => {
      const shape = graph.weights.get(name)!.shape;
      const isPacked = packed.has(name);
      if (isPacked) staging = Math.max(staging, panelBytes(dtype, shape[1]));
      const size = isPacked ? packedBytes(dtype, shape[0], shape[1]) : shape.reduce((a, b) => a * b, 1) * (dtype === 'f32' ? 4 : 2);
      const entry = { name, offset: bytes, packed: isPacked };
      bytes += alignUp(size + SLACK); // SLACK: vector loads of a last partial group read past a weight
      return entry;
    });
    slotBytes = Math.max(slotBytes, bytes);
    return entries;
  });
  const count = stream.prefetch + 1;
  const base = heap.alloc(slotBytes * count, `${count} weight-stream slots of ${slotBytes} bytes (prefetch ${stream.prefetch}; stream fewer layers ahead)`);
  const slots = Array.from({ length: count }, (_, s) => base + s * slotBytes);
  const stagingAt = heap.alloc(staging, `the weight-stream staging buffer (${staging} bytes)`);
  const packArgs = heap.alloc(64, 'the weight-stream pack arguments');
  const { first, last } = nodeSpans(graph, nodes, groupOf, stream.groups.length);
  checkSpans(first, last, count);
  return { stream, groups, dtype, slots, slotBytes, staging: stagingAt, stagingBytes: staging, packArgs, first, last };
}

/** First and last node reading each group; a group no node reads is loaded with the next one that is. */
function nodeSpans(graph: Graph, nodes: readonly CpuNode[], groupOf: ReadonlyMap<WeightName, number>, count: number): { first: Int32Array; last: Int32Array } {
  const first = new Int32Array(count).fill(-1);
  const last = new Int32Array(count).fill(-1);
  nodes.forEach((node, i) => {
    for (const w of cpuNodeWeights(node, graph)) {
      const g = groupOf.get(w);
      if (g === undefined) continue;
      if (first[g] < 0) first[g] = i;
      last[g] = i;
    }
  });
  let next = Math.max(0, nodes.length - 1);
  for (let g = count - 1; g >= 0; g--) {
    if (first[g] < 0) first[g] = last[g] = next;
    else next = first[g];
  }
  return { first, last };
}

/**
 * Groups are acquired in order and run() loads group g before its first node: spans must be in group
 * order, and the group that last used g's slot (g − slots) must be done before g's first node.
 */
function checkSpans(first: Int32Array, last: Int32Array, slots: number): void {
  for (let g = 1; g < first.length; g++) {
    if (first[g] < first[g - 1] || last[g] < last[g - 1]) {
      throw new BackendError(`weight stream group ${g} is read before group ${g - 1} (nodes ${first[g]}–${last[g]} vs ${first[g - 1]}–${last[g - 1]})`, { field: 'stream.groups', expected: 'groups in the order a step reads them' });
    }
    if (g >= slots && last[g - slots] >= first[g]) {
      throw new BackendError(`weight stream group ${g} is read (node ${first[g]}) while group ${g - slots}, whose slot it reuses, still is (until node ${last[g - slots]})`, {
        field: 'stream.prefetch', expected: `at least ${slots} to hold the overlapping groups`, found: String(slots - 1),
      });
    }
  }
}

/** Weights a node of the rewritten graph reads. */
export function cpuNodeWeights(node: CpuNode, graph: Graph): WeightName[] {
  if (node.op === 'linearGroup') return node.parts.flatMap((p) => (p.bias === null ? [p.weight] : [p.weight, p.bias]));
  const out: WeightName[] = [];
  for (const v of Object.values(node.attrs as Record<string, unknown>)) if (typeof v === 'string' && graph.weights.has(v)) out.push(v);
  return out;
}
