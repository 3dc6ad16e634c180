// What one step of a model costs, read off its graph: the weight bytes a decode token must stream from
// memory (the batch-1 roofline) and the FLOPs of a prompt (for prefill GFLOP/s). Generic over every
// architecture the engine loads: linear weights on 'tokens' rows run once per token, those after
// gatherRows ('selected' rows: the LM head) once per sequence.
import type { Graph } from '@zinfer/core';

export interface ModelCost {
  /** Elements of every weight of the model. */
  params: number;
  /** Bytes per weight element as held by the engine (stored dtype, or --dtype). */
  bytesPerParam: number;
  /** Elements of linear weights that run on every token / on each sequence's selected row. */
  tokenMatmulParams: number;
  selectedMatmulParams: number;
  /** Weight bytes one decode step of one sequence reads: every linear and norm weight, one embedding row. */
  decodeWeightBytes: number;
  /** Per attention layer: heads × headDim (QKᵀ and PV widths). */
  attentionWidths: number[];
}

export function modelCost(graph: Graph, weightBytes: number): ModelCost {
  const numel = (name: string) => graph.weights.get(name)!.shape.reduce((a, b) => a * b, 1);
  const params = [...graph.weights.keys()].reduce((n, w) => n + numel(w), 0);
  const bytesPerParam = weightBytes / params;
  let tokenMatmulParams = 0;
  let selectedMatmulParams = 0;
  const streamed = new Set<string>(); // weights read whole each step
  let embeddingRowElements = 0;
  const attentionWidths: number[] = [];
  for (const node of graph.nodes) {
    if (node.op === 'linear') {
      const n = numel(node.attrs.weight) + (node.attrs.bias ? numel(node.attrs.bias) : 0);
      if (graph.values[node.output].rows === 'tokens') tokenMatmulParams += n;
      else selectedMatmulParams += n;
      streamed.add(node.attrs.weight);
      if (node.attrs.bias) streamed.add(node.attrs.bias);
    } else if (node.op === 'rmsNorm' || node.op === 'layerNorm') {
      streamed.add(node.attrs.weight);
      if (node.op === 'layerNorm') streamed.add(node.attrs.bias);
    } else if (node.op === 'embedding') {
      embeddingRowElements += graph.weights.get(node.attrs.table)!.shape[1];
    } else if (node.op === 'attention') {
      attentionWidths.push(node.attrs.heads * node.attrs.headDim);
    }
  }
  const streamedElements = [...streamed].reduce((n, w) => n + numel(w), 0);
  return {
    params, bytesPerParam, tokenMatmulParams, selectedMatmulParams, attentionWidths,
    decodeWeightBytes: Math.round((streamedElements + embeddingRowElements) * bytesPerParam),
  };
}

/**
 * FLOPs of one T-token prompt (no cached context), the formula BENCHMARKS.md states:
 * 2·T·(token matmul params) + 2·(LM-head params) + Σ_layers 2·2·(heads·headDim)·T(T+1)/2,
 * the last term being QKᵀ and PV over the causal triangle. Norms, rotary, softmax are left out (< 1%).
 */
export function prefillFlops(c: ModelCost, tokens: number): number {
  const attention = c.attentionWidths.reduce((n, w) => n + 2 * w * tokens * (tokens + 1), 0);
  return 2 * tokens * c.tokenMatmulParams + 2 * c.selectedMatmulParams + attention;
}
