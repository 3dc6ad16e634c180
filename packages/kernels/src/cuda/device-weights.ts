// Uploads each weight of a graph once. Matrices (embedding tables, linear weights: nearly all the bytes)
// stay in their stored dtype in f32 parity mode and are widened in registers by the kernels; in the
// 16-bit modes they are held in the activation dtype (cuBLAS multiplies like types on tensor cores; f32 or
// other-16-bit matrices are converted once here). 1-D tensors (norm weights and biases, a tiny fraction)
// are widened to f32, exactly, so their kernels take one type.
import { fetchGraphWeight, fromF32, shapeString, toF32, type FloatDType, type Graph, type OpNode, type WeightName, type WeightSource } from '@zinfer/core';
import type { Gpu } from './gpu.js';

export interface DeviceWeight {
  ptr: bigint;
  /** Lives inside the allocation of the weight before it in its side-by-side group: not freed on its own. */
  shared?: boolean;
  /** dtype on the device: the stored one (f32 mode) or the activation dtype for matrices, f32 for vectors. */
  dtype: FloatDType;
  shape: readonly number[];
  bytes: number;
}

/** 'auto': the dtype of the graph's matrices when it is f16 or bf16 (as they are stored), else f32. */
export type ActivationChoice = FloatDType | 'auto';

/**
 * Linear weights that read one input and have one shape (q, k and v without GQA; gate and up), in graph
 * order, and the experts of each MoE node: uploaded side by side into one allocation, so that a
 * strided-batched GEMM can run them as one (batched-gemm.ts, moe-dense.ts). Weights read by several
 * nodes, or streamed, stay apart.
 */
export function sideBySideWeights(graph: Graph, skip: ReadonlySet<WeightName> = new Set()): WeightName[][] {
  const uses = new Map<WeightName, number>();
  const byInput = new Map<number, OpNode<'linear'>[]>();
  for (const n of graph.nodes) {
    if (n.op !== 'linear') continue;
    const lin = n as OpNode<'linear'>;
    uses.set(lin.attrs.weight, (uses.get(lin.attrs.weight) ?? 0) + 1);
    const list = byInput.get(lin.inputs.x) ?? [];
    list.push(lin);
    byInput.set(lin.inputs.x, list);
  }
  const groups: WeightName[][] = [];
  for (const list of byInput.values()) {
    const byShape = new Map<string, WeightName[]>();
    for (const lin of list) {
      const w = lin.attrs.weight;
      if (uses.get(w) !== 1 || skip.has(w)) continue;
      const key = shapeString(graph.weights.get(w)!.shape);
      byShape.set(key, [...(byShape.get(key) ?? []), w]);
    }
    for (const names of byShape.values()) if (names.length > 1) groups.push(names);
  }
  // MoE experts: gate and up of every expert interleaved (g0 u0 g1 u1 …), and every down, so that a batch
  // step runs each set as one strided-batched GEMM (moe-dense.ts).
  const moeUses = new Map<WeightName, number>();
  const moe = graph.nodes.filter((n): n is OpNode<'moeExperts'> => n.op === 'moeExperts');
  for (const n of moe) for (const e of n.attrs.experts) for (const w of [e.gate, e.up, e.down]) moeUses.set(w, (moeUses.get(w) ?? 0) + 1);
  for (const n of moe) {
    const { experts } = n.attrs;
    for (const names of [experts.flatMap((e) => [e.gate, e.up]), experts.map((e) => e.down)]) {
      const shape = shapeString(graph.weights.get(names[0])?.shape ?? []);
      const usable = (w: WeightName) => moeUses.get(w) === 1 && !uses.has(w) && !skip.has(w) && shapeString(graph.weights.get(w)?.shape ?? []) === shape;
      if (names.length > 1 && names.every(usable)) groups.push(names);
    }
  }
  return groups;
}

/**
 * Every graph weight on the device but those in `skip` (streamed ones), and the activation dtype `choice`
 * resolved to ('auto' looks at the first uploaded matrix). Side-by-side groups (sideBySideWeights) share one
 * allocation when their members end up in one dtype. On failure, frees what it had uploaded and rethrows.
 */
export function uploadWeights(gpu: Gpu, graph: Graph, source: WeightSource, choice: ActivationChoice = 'f32', skip: ReadonlySet<WeightName> = new Set()): { weights: Map<WeightName, DeviceWeight>; act: FloatDType } {
  const out = new Map<WeightName, DeviceWeight>();
  let act: FloatDType | null = choice === 'auto' ? null : choice;
  const groupOf = new Map<WeightName, WeightName[]>();
  for (const names of sideBySideWeights(graph, skip)) for (const n of names) groupOf.set(n, names);
  /** The weight as it will sit on the device. */
  const prepare = (name: WeightName) => {
    const t = fetchGraphWeight(graph, source, name);
    const matrix = t.shape.length !== 1;
    if (matrix && act === null) act = t.dtype === 'f32' ? 'f32' : t.dtype;
    const dtype: FloatDType = !matrix ? 'f32' : act === 'f32' || act === null ? t.dtype : act;
    return { name, shape: t.shape, dtype, data: dtype === t.dtype ? t.data : fromF32(dtype, toF32(t.dtype, t.data)) };
  };
  try {
    for (const name of graph.weights.keys()) {
      if (skip.has(name) || out.has(name)) continue;
      const group = (groupOf.get(name) ?? [name]).map(prepare);
      const together = group.length > 1 && group.every((w) => w.dtype === group[0].dtype);
      const total = group.reduce((n, w) => n + w.data.byteLength, 0);
      const base = together ? gpu.alloc(total, `weights ${group.map((w) => w.name).join(' | ')} ${shapeString(group[0].shape)} ${group[0].dtype}`) : 0n;
      let offset = 0;
      for (const [i, w] of group.entries()) {
        const ptr = together ? base + BigInt(offset) : gpu.alloc(w.data.byteLength, `weight ${w.name} ${shapeString(w.shape)} ${w.dtype}`);
        out.set(w.name, { ptr, dtype: w.dtype, shape: w.shape, bytes: w.data.byteLength, ...(together && i > 0 ? { shared: true } : {}) });
        gpu.upload(ptr, w.data);
        offset += w.data.byteLength;
      }
    }
  } catch (e) {
    for (const w of out.values()) if (!w.shared) gpu.free(w.ptr);
    throw e;
  }
  return { weights: out, act: act ?? 'f32' };
}
