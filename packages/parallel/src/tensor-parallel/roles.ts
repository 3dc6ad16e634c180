// Which slice of its output each linear of a single-device graph produces under tensor slicing
// (Megatron): q/k/v and the first MLP matrices are column-parallel, split by heads or by the MLP width;
// the LM head is vocab-parallel. Found from the graph's dataflow, not from weight names, so every
// architecture that builds its graph from the op set is covered.
import type { Graph, OpNode, ValueId } from '@zinfer/core';

export type LinearRole =
  | { kind: 'query'; heads: number; headDim: number }
  | { kind: 'keyValue'; kvHeads: number; headDim: number }
  | { kind: 'ffn' }
  | { kind: 'vocab' };

/** Role of each column-parallel linear, by node index; linears absent from the map are replicated or row-parallel. */
export function linearRoles(graph: Graph): Map<number, LinearRole> {
  const producer = new Map<ValueId, number>();
  graph.nodes.forEach((n, i) => producer.set(n.output, i));
  const roles = new Map<number, LinearRole>();
  const linearBehind = (v: ValueId): number | null => {
    // Per-head ops (rotary, per-head RMSNorm) sit between a projection and attention.
    for (let i = producer.get(v); i !== undefined; i = producer.get(inputOf(graph.nodes[i]))) {
      const n = graph.nodes[i];
      if (n.op === 'linear') return i;
      if (!(n.op === 'rotary' || (n.op === 'rmsNorm' && n.attrs.dim < graph.values[n.output].width))) return null;
    }
    return null;
  };
  const mark = (v: ValueId, role: LinearRole) => {
    const i = linearBehind(v);
    if (i !== null) roles.set(i, role);
  };
  for (const n of graph.nodes) {
    if (n.op === 'attention') {
      const { heads, kvHeads, headDim } = n.attrs;
      mark(n.inputs.q, { kind: 'query', heads, headDim });
      mark(n.inputs.k, { kind: 'keyValue', kvHeads, headDim });
      mark(n.inputs.v, { kind: 'keyValue', kvHeads, headDim });
    } else if (n.op === 'gatedActivation') {
      mark(n.inputs.gate, { kind: 'ffn' });
      mark(n.inputs.up, { kind: 'ffn' });
    } else if (n.op === 'activation') {
      const i = producer.get(n.inputs.x);
      if (i !== undefined && graph.nodes[i].op === 'linear') roles.set(i, { kind: 'ffn' });
    }
  }
  const head = producer.get(graph.output);
  if (head !== undefined && graph.nodes[head].op === 'linear') roles.set(head, { kind: 'vocab' });
  return roles;
}

/** The activation input of a single-input op (what the op transforms). */
function inputOf(n: OpNode): ValueId {
  return 'x' in n.inputs ? (n.inputs as { x: ValueId }).x : -1;
}
