// The activation (and KV-cache) dtype a cuda program will use, known before any weight is read when the
// source can tell stored dtypes from headers (WeightSource.dtypeOf): 'auto' follows the graph's first
// matrix as uploadWeights does (f16 or bf16 as stored, else f32).
import type { FloatDType, Graph, WeightSource } from '@zinfer/core';
import type { ActivationChoice } from './device-weights.js';

/** The dtype, or null when 'auto' cannot be resolved without reading weights. */
export function plannedActivations(graph: Graph, choice: ActivationChoice, weights?: WeightSource): FloatDType | null {
  if (choice !== 'auto') return choice;
  if (!weights?.dtypeOf) return null;
  for (const info of graph.weights.values()) {
    if (info.shape.length === 1) continue;
    const d = weights.dtypeOf(info.name);
    return d === 'f32' ? 'f32' : d;
  }
  return 'f32';
}
