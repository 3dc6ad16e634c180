// Uploads each weight of a graph once. Matrices (embedding tables, linear weights: nearly all the bytes)
// stay in their stored dtype in f32 parity mode and are widened in registers by the kernels; in the
// 16-bit modes they are held in the activation dtype (cuBLAS multiplies like types on tensor cores; f32 or
// other-16-bit matrices are converted once here). 1-D tensors (norm weights and biases, a tiny fraction)
// are widened to f32, exactly, so their kernels take one type.
import { fetchGraphWeight, fromF32, shapeString, toF32, type FloatDType, type Graph, type WeightName, type WeightSource } from '@zinfer/core';
import type { Gpu } from './gpu.js';

export interface DeviceWeight {
  ptr: bigint;
  /** dtype on the device: the stored one (f32 mode) or the activation dtype for matrices, f32 for vectors. */
  dtype: FloatDType;
  shape: readonly number[];
  bytes: number;
}

/** 'auto': the dtype of the graph's matrices when it is f16 or bf16 (as they are stored), else f32. */
export type ActivationChoice = FloatDType | 'auto';

/**
 * Every graph weight on the device but those in `skip` (streamed ones), and the activation dtype `choice`
 * resolved to ('auto' looks at the first uploaded matrix). On failure, frees what it had uploaded and rethrows.
 */
export function uploadWeights(gpu: Gpu, graph: Graph, source: WeightSource, choice: ActivationChoice = 'f32', skip: ReadonlySet<WeightName> = new Set()): { weights: Map<WeightName, DeviceWeight>; act: FloatDType } {
  const out = new Map<WeightName, DeviceWeight>();
  let act: FloatDType | null = choice === 'auto' ? null : choice;
  try {
    for (const name of graph.weights.keys()) {
      if (skip.has(name)) continue;
      const t = fetchGraphWeight(graph, source, name);
      const matrix = t.shape.length !== 1;
      if (matrix && act === null) act = t.dtype === 'f32' ? 'f32' : t.dtype;
      const dtype: FloatDType = !matrix ? 'f32' : act === 'f32' || act === null ? t.dtype : act;
      const data = dtype === t.dtype ? t.data : fromF32(dtype, toF32(t.dtype, t.data));
      const ptr = gpu.alloc(data.byteLength, `weight ${name} ${shapeString(t.shape)} ${dtype}`);
      out.set(name, { ptr, dtype, shape: t.shape, bytes: data.byteLength });
      gpu.upload(ptr, data);
    }
  } catch (e) {
    for (const w of out.values()) gpu.free(w.ptr);
    throw e;
  }
  return { weights: out, act: act ?? 'f32' };
}

