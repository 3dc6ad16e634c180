// Weights grouped by decoder layer, in the order a step first reads them: the unit that offload places in
// a tier and streams in. Weights outside every layer (embeddings, final norm, LM head) form no group.
import type { Graph } from './graph.js';
import type { WeightName } from './ops.js';

/** Layer index in a Hugging Face weight name: `model.layers.3.…`, `transformer.h.3.…`, `gpt_neox.layers.3.…`. */
const LAYER = /(?:^|\.)(?:layers|h)\.(\d+)\./;

export interface WeightGroup {
  layer: number;
  names: WeightName[];
}

export function layerOfWeight(name: WeightName): number | null {
  const m = LAYER.exec(name);
  return m ? Number(m[1]) : null;
}

/** One group per decoder layer, ordered by the first node reading it; names in first-read order. */
export function layerWeightGroups(graph: Graph): WeightGroup[] {
  const byLayer = new Map<number, WeightGroup>();
  const seen = new Set<WeightName>();
  const visit = (name: WeightName) => {
    if (seen.has(name)) return;
    seen.add(name);
    const layer = layerOfWeight(name);
    if (layer === null) return;
    let g = byLayer.get(layer);
    if (!g) byLayer.set(layer, (g = { layer, names: [] }));
    g.names.push(name);
  };
  for (const node of graph.nodes) for (const w of nodeWeights(node)) if (graph.weights.has(w)) visit(w);
  for (const name of graph.weights.keys()) visit(name); // weights no node reads keep their layer's group
  return [...byLayer.values()];
}

/** Every string in a node's attrs: the weight names among them are what the caller keeps. */
function nodeWeights(node: Graph['nodes'][number]): WeightName[] {
  const out: WeightName[] = [];
  for (const value of Object.values(node.attrs as Record<string, unknown>)) {
    if (typeof value === 'string') out.push(value);
    else if (Array.isArray(value)) for (const v of value) if (typeof v === 'string') out.push(v);
  }
  return out;
}
