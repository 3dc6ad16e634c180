// Compiling a graph for the cpu backend: check the nodes, copy every weight into the shared memory in
// its stored dtype, place the KV cache, per-thread scratch and argument blocks, and rewrite the graph.
// With a weight stream, the streamed weights get slots instead (stream-plan.ts) and point into them
// while a step runs (stream-run.ts).
import { BackendError, checkGraphForBackend, fetchGraphWeight, type Communicator, type CompileOptions, type FloatDType, type Graph, type KvLayout, type WeightName, type WeightSource } from '@zinfer/core';
import { supports } from './supports.js';
import { fuseGraph, type CpuNode } from './fuse.js';
import { PAGE, WasmHeap } from './heap.js';
import { linearScratchBytes } from './linear-layout.js';
import { packedBytes, packWeight } from './pack.js';
import { planStream, streamDtype, streamedWeights, type StreamPlan } from './stream-plan.js';

export interface PlacedWeight {
  /** Heap byte offset; for a streamed weight, where it lies in its group's current slot (set per step). */
  ptr: number;
  dtype: FloatDType;
  shape: readonly number[];
  /** Stored in panels of 8 rows (see pack.ts): every weight a linear reads. */
  packed: boolean;
}

export interface KvPlacement {
  /** Byte offsets of each layer's K and V: [slots, kvHeads*headDim] f32. */
  k: number[];
  v: number[];
  slots: number;
  width: number;
}

export interface CompiledGraph {
  graph: Graph;
  nodes: CpuNode[];
  heap: WasmHeap;
  weights: Map<WeightName, PlacedWeight>;
  kv: KvPlacement | null;
  kvSpec: CompileOptions['kvCache'];
  scratch: { ptr: number; bytesPerThread: number };
  args: number;
  communicator: Communicator | null;
  pipeline: Communicator | null;
  stream: StreamPlan | null;
  memory: CpuMemory;
}

/** Bytes a program holds in its heap, by use (activations come on top, sized per step). */
export interface CpuMemory {
  /** Weights placed at compile time (resident). */
  residentWeights: number;
  /** The weight-stream slots: (prefetch + 1) × the largest group. */
  streamSlots: number;
  /** The buffer streamed linear rows are staged in before they are packed into a slot. */
  streamStaging: number;
  kvCache: number;
}

export const ARGS_BYTES = 4096;
/** asm/attention.ts HC (query heads per item) + 1 array of row offsets. */
const ATTENTION_HEADS_PER_ITEM_PLUS_OFFSETS = 5;

export function compileGraph(graph: Graph, source: WeightSource, options: CompileOptions, threads: number, fuse: boolean): CompiledGraph {
  checkGraphForBackend(graph, { name: 'cpu', supports }, options);
  const kvSpec = checkKvSpec(options.kvCache);
  const heap = new WasmHeap();
  const linearWeights = new Set(graph.nodes.flatMap((n) => (n.op === 'linear' ? [n.attrs.weight] : [])));
  const groupOf = options.stream ? streamedWeights(graph, options.stream) : new Map<WeightName, number>();
  const weights = loadWeights(graph, source, heap, linearWeights, groupOf);
  const residentWeights = heap.end;
  const dtype = groupOf.size ? streamDtype(new Set([...weights.values()].map((w) => w.dtype))) : 'f32';
  for (const name of groupOf.keys()) weights.set(name, { ptr: 0, dtype, shape: graph.weights.get(name)!.shape, packed: linearWeights.has(name) });
  const nodes = fuseGraph(graph, (w) => weights.get(w)!.dtype, { fuse });
  const stream = options.stream ? planStream(graph, nodes, options.stream, groupOf, dtype, linearWeights, heap) : null;
  const hasAttention = graph.nodes.some((n) => n.op === 'attention');
  const kv = hasAttention ? placeKv(graph.kv, kvSpec, heap) : null;
  let perThread = 0;
  for (const n of nodes) if (n.op === 'linearGroup') perThread = Math.max(perThread, linearScratchBytes(graph.values[n.x].width));
  // Attention: scores of up to 4 heads and the row offsets, one entry per cached position (+ 1/Σ each).
  if (kv) perThread = Math.max(perThread, ATTENTION_HEADS_PER_ITEM_PLUS_OFFSETS * (kv.slots + 4) * 4);
  perThread = Math.ceil(perThread / 64) * 64;
  const scratch = { ptr: heap.alloc(perThread * threads, 'per-thread scratch'), bytesPerThread: perThread };
  const args = heap.alloc(ARGS_BYTES, 'kernel arguments');
  const memory = { residentWeights: residentWeights - PAGE, streamSlots: stream ? stream.slotBytes * stream.slots.length : 0, streamStaging: stream?.stagingBytes ?? 0, kvCache: kv ? kv.slots * kv.width * 8 * graph.kv.layers : 0 };
  return { graph, nodes, heap, weights, kv, kvSpec, scratch, args, communicator: options.communicator ?? null, pipeline: options.pipeline ?? null, stream, memory };
}

function checkKvSpec(spec: CompileOptions['kvCache']): CompileOptions['kvCache'] {
  for (const field of ['numBlocks', 'blockSize'] as const) {
    const n = spec[field];
    if (!Number.isSafeInteger(n) || n < 1) throw new BackendError('KV cache size is not a positive integer', { field: `kvCache.${field}`, expected: 'an integer ≥ 1', found: String(n) });
  }
  return spec;
}

/**
 * Every weight the graph declares but the stream, copied in its stored dtype (linear weights packed in
 * panels); a shape or storage mismatch names the weight.
 */
function loadWeights(graph: Graph, source: WeightSource, heap: WasmHeap, linearWeights: ReadonlySet<WeightName>, streamed: ReadonlyMap<WeightName, number>): Map<WeightName, PlacedWeight> {
  const out = new Map<WeightName, PlacedWeight>();
  for (const name of graph.weights.keys()) {
    if (streamed.has(name)) continue;
    const t = fetchGraphWeight(graph, source, name);
    const packed = linearWeights.has(name);
    const bytes = packed ? packedBytes(t.dtype, t.shape[0], t.shape[1]) : t.data.byteLength;
    const ptr = heap.alloc(bytes, `weight ${name} (${bytes} bytes)`);
    if (packed) packWeight(heap, ptr, t);
    else heap.u8.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), ptr);
    out.set(name, { ptr, dtype: t.dtype, shape: t.shape, packed });
  }
  return out;
}

function placeKv(layout: KvLayout, spec: CompileOptions['kvCache'], heap: WasmHeap): KvPlacement {
  const slots = spec.numBlocks * spec.blockSize;
  const width = layout.kvHeads * layout.headDim;
  const bytes = slots * width * 4;
  const kv: KvPlacement = { k: [], v: [], slots, width };
  for (let l = 0; l < layout.layers; l++) {
    kv.k.push(heap.alloc(bytes, `the KV cache (layer ${l} of ${layout.layers}, ${bytes} bytes for K; use fewer or smaller blocks)`));
    kv.v.push(heap.alloc(bytes, `the KV cache (layer ${l} of ${layout.layers}, ${bytes} bytes for V; use fewer or smaller blocks)`));
  }
  return kv;
}
