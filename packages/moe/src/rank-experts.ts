// One rank's MoE layers: each moeExperts node cut to the experts of the rank's group (each expert's
// slice when the group slices them), then joined with the other ranks' parts by one all-reduce, or
// wrapped in the all-to-all dispatch and combine. The rest of the rank's graph (already tensor-sliced or
// replicated) passes through unchanged.
import type { Graph, MoeExchange, OpNode, ValueId, WeightInfo, WeightName, WeightShard } from '@zinfer/core';
import type { MoeLayout } from './options.js';

type Expert = OpNode<'moeExperts'>['attrs']['experts'][number];

export interface RankMoe {
  layout: MoeLayout;
  /** Per MoE layer (moeExperts node order): the expert group of each expert. */
  owners: readonly Int32Array[];
  rank: number;
}

export function rankMoeGraph(graph: Graph, shards: readonly WeightShard[], moe: RankMoe): { graph: Graph; shards: WeightShard[] } {
  const { layout, rank } = moe;
  const group = Math.floor(rank / layout.tensor);
  const slice = rank % layout.tensor;
  const values = [...graph.values];
  const nodes: OpNode[] = [];
  const weights = new Map(graph.weights);
  const newShards = new Map<WeightName, WeightShard>(shards.map((s) => [s.weight, s]));
  const rename = new Map<ValueId, ValueId>();
  const add = (op: OpNode['op'], inputs: unknown, attrs: unknown, like: ValueId): ValueId => {
    const id = values.length;
    values.push({ ...values[like], id });
    nodes.push({ op, inputs, attrs, output: id } as OpNode);
    return id;
  };
  let layer = 0;
  for (const n of graph.nodes) {
    const node = remapInputs(n, rename);
    if (node.op !== 'moeExperts') {
      nodes.push(node);
      continue;
    }
    const owner = moe.owners[layer++];
    const mine: Expert[] = [];
    for (const e of node.attrs.experts) {
      if (owner[e.id] !== group) [e.gate, e.up, e.down].forEach((w) => weights.delete(w));
      else mine.push(e);
    }
    if (layout.tensor > 1) for (const e of mine) sliceExpert(e, slice, layout.tensor, weights, newShards);
    const attrs = { ...node.attrs, experts: mine };
    let out: ValueId;
    if (layout.dispatch === 'all-reduce') {
      const partial = add('moeExperts', node.inputs, attrs, n.output);
      out = add('allReduce', { x: partial }, {}, n.output);
    } else {
      const exchange: MoeExchange = { ranks: layout.size, slices: layout.tensor, owner: Array.from(owner), coordinated: layout.coordinated };
      const { x, routing } = node.inputs;
      const dx = add('moeDispatch', { x, routing }, { exchange, topK: attrs.topK, part: 'x' }, x);
      const dr = add('moeDispatch', { x, routing }, { exchange, topK: attrs.topK, part: 'routing' }, routing);
      const y = add('moeExperts', { x: dx, routing: dr }, attrs, n.output);
      out = add('moeCombine', { x: y, routing }, { exchange, topK: attrs.topK }, n.output);
    }
    rename.set(n.output, out);
  }
  for (const name of newShards.keys()) if (!weights.has(name)) newShards.delete(name);
  return { graph: { ...graph, nodes, values, weights, output: rename.get(graph.output) ?? graph.output }, shards: [...newShards.values()] };
}

/** Slice `slice` of `slices` of an expert: rows of gate and up (its intermediate features), columns of down. */
function sliceExpert(e: Expert, slice: number, slices: number, weights: Map<WeightName, WeightInfo>, shards: Map<WeightName, WeightShard>): void {
  for (const [name, axis] of [[e.gate, 0], [e.up, 0], [e.down, 1]] as const) {
    const shape = [...weights.get(name)!.shape];
    const length = shape[axis] / slices;
    shape[axis] = length;
    weights.set(name, { name, shape });
    shards.set(name, { weight: name, axis, start: slice * length, length });
  }
}

function remapInputs(n: OpNode, rename: Map<ValueId, ValueId>): OpNode {
  const inputs = Object.fromEntries(Object.entries(n.inputs as Record<string, ValueId>).map(([k, v]) => [k, rename.get(v) ?? v]));
  return { ...n, inputs } as OpNode;
}
