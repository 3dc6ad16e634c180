// Which nodes of a graph the CUDA backend fuses, decided once at compile time from the graph's shape:
//   - linear groups: every linear belongs to one. In a step of at most 8 rows a group is one GEMV launch
//     (gemv.cu) that may also take the norm before it (RMSNorm or LayerNorm over the whole row, when the
//     norm feeds only this group), up to 3 linears on one input (q, k, v: launched where the first runs,
//     so their outputs' buffers are taken from there on), and what follows: the residual add, an
//     activation, or the gated activation of a gate and an up linear (launched where that node runs).
//     With more rows the group's nodes run one by one (cuBLAS for the products).
//   - rotary + KV write: an attention whose q and k come straight from rotary nodes (used by nothing
//     else) rotates both and writes k and v into the cache in one kernel, in every step (in a decode
//     step that kernel is the attention itself).
//   - embedding sums: an add of two embedding lookups that nothing else reads (GPT-2's token + position
//     embeddings) is one kernel, launched where the add runs, rounding each lookup as its own launch would;
//   - all-reduce + residual: an add of an all-reduce's result (read by nothing else) and another value
//     (a row-parallel projection's partial sums and the residual stream) is one launch where the add runs:
//     the peer all-reduce adds the residual itself; through NCCL the two still run one after the other;
//   - pushed all-reduces: a lone linear whose output only an all-reduce reads (a row-parallel projection)
//     may push its output into the peer all-reduce's Lamport slots from the GEMV's epilogue (gemv.cu
//     EPI_PUSH), the all-reduce then only gathering; no other collective may run between the two, since a
//     Lamport call's generation is the next call's (collective-launch.ts decides per step, by message size);
//   - router norms: an RMSNorm over the whole row whose first reader is a moeRouter (the experts read it
//     too) runs inside the router's launch, which writes the normalized rows for the later readers;
//   - row gathers: a gatherRows node reads its input through an alias when the step selects every row in
//     order (decode steps, whose graphs replay only such steps), so no copy is launched; its input then
//     lives as long as the gather's output is read.
//   - L2 prefetch targets: the weight of the GEMV that runs next after each attention and each group
//     (l2-prefetch.ts says when a launch asks for it).
// Fused launches read and write values at other positions than the graph's nodes do; `extraUses` and
// `earlyDefs` tell the buffer plan, so one buffer assignment is safe for the fused and the unfused schedule.
import { COLLECTIVE_KINDS, type Graph, type OpNode, type ValueId, type WeightName } from '@zinfer/core';
import type { EarlyDef, ExtraUse } from './buffer-plan.js';

/** Shared memory a fused router may use without opting in. */
export const ROUTER_SHARED_BYTES = 48 * 1024;

/** Dynamic shared memory of a router launch: its probabilities, then (fused norm) the row in f32, 16-byte aligned. */
export function routerSharedBytes(experts: number, hidden: number, norm: boolean): number {
  return (norm ? Math.ceil(experts / 4) * 4 + hidden : experts) * 4;
}

export type Epilogue =
  | { kind: 'none' }
  | { kind: 'residual'; node: OpNode<'add'>; residual: ValueId }
  | { kind: 'act'; node: OpNode<'activation'> }
  | { kind: 'gated'; node: OpNode<'gatedActivation'> };

export interface LinearGroup {
  /** 1–3 linears reading `input` (gated: [gate, up]). */
  members: OpNode<'linear'>[];
  input: ValueId;
  /** A norm producing `input` that only this group reads: fused into the GEMV. */
  norm: OpNode<'rmsNorm'> | OpNode<'layerNorm'> | null;
  epilogue: Epilogue;
  /** The value the fused launch writes for each output (the members', or the epilogue node's). */
  outputs: ValueId[];
  /** Node index where the fused launch runs: the first linear of a plain group, else the epilogue node. */
  at: number;
  /** Node indices the fused launch replaces. */
  covers: number[];
}

export interface RopeKv {
  q: OpNode<'rotary'>;
  k: OpNode<'rotary'>;
  /** Indices of the two rotary nodes, which the attention's launch replaces. */
  covers: number[];
}

export interface EmbeddingSum {
  /** The add's two lookups (its inputs a and b), which its launch replaces. */
  a: OpNode<'embedding'>;
  b: OpNode<'embedding'>;
  covers: number[];
}

export interface ReduceAdd {
  reduce: OpNode<'allReduce'>;
  /** The add's other input. */
  residual: ValueId;
  covers: number[];
}

export interface ExecPlan {
  groups: LinearGroup[];
  /** Node index → the group that covers it. */
  groupOf: Map<number, LinearGroup>;
  /** Attention node → its fused rotary. */
  rope: Map<OpNode, RopeKv>;
  /** Rotary node indices run by their attention's launch. */
  ropeCovers: Set<number>;
  /** Add node → the two embedding lookups it sums in one launch. */
  embeddingSums: Map<OpNode, EmbeddingSum>;
  /** Embedding node indices run by their add's launch. */
  embeddingCovers: Set<number>;
  /** Add node → the all-reduce whose result it adds to `residual` in one launch (collective-launch.ts). */
  reduceAdds: Map<OpNode, ReduceAdd>;
  /** All-reduce node indices run by their add's launch. */
  reduceCovers: Set<number>;
  /** allReduce node → the lone-linear group whose GEMV may push its input (collective-launch.ts: peerPush). */
  pushes: Map<OpNode, LinearGroup>;
  /** The reverse: group → the all-reduce it may push into. */
  pushOf: Map<LinearGroup, OpNode<'allReduce'>>;
  /** moeRouter node → the RMSNorm its launch computes (and writes) first. */
  routerNorms: Map<OpNode, OpNode<'rmsNorm'>>;
  /** RMSNorm node index → the index of the router whose launch runs it. */
  routerNormCovers: Map<number, number>;
  /** gatherRows output → its input: the value read instead when a step selects every row in order. */
  gatherAlias: Map<ValueId, ValueId>;
  /** The first weight the next linear group reads, after an attention node or a group (none after the last). */
  nextWeight: Map<OpNode | LinearGroup, WeightName>;
  extraUses: ExtraUse[];
  earlyDefs: EarlyDef[];
}

export interface FusionOptions {
  /** Fuse norms, epilogues and q/k/v into GEMVs (default true). */
  linear: boolean;
  /** Fuse rotary and the KV write into one kernel (default true). */
  rope: boolean;
  /** Sum two embedding lookups in one kernel (default: as `linear`). */
  embedding?: boolean;
  /** Add the residual in the all-reduce before it (default: as `linear`). */
  reduceAdd?: boolean;
  /** Let a row-parallel GEMV push its output into the all-reduce after it (default: as `linear`). */
  push?: boolean;
  /** Device dtype of a weight: linears fuse only with linears of the same weight dtype (one kernel type). */
  weightDtype?: (name: string) => string;
}

export function planExecution(graph: Graph, opts: FusionOptions = { linear: true, rope: true }): ExecPlan {
  const { nodes } = graph;
  const consumers = new Map<ValueId, number[]>();
  const producer = new Map<ValueId, number>();
  nodes.forEach((node, i) => {
    producer.set(node.output, i);
    for (const v of Object.values(node.inputs)) consumers.set(v, [...(consumers.get(v) ?? []), i]);
  });
  const usesOf = (v: ValueId) => (v === graph.output ? [...(consumers.get(v) ?? []), Infinity] : consumers.get(v) ?? []);
  const groups: LinearGroup[] = [];
  const grouped = new Set<number>();

  // Single linears with an epilogue, and gate/up pairs.
  nodes.forEach((node, i) => {
    if (node.op !== 'linear' || grouped.has(i) || !opts.linear) return;
    const uses = usesOf(node.output);
    if (uses.length !== 1 || !Number.isFinite(uses[0])) return;
    const c = uses[0];
    const next = nodes[c];
    if (next.op === 'add' && (next.inputs.a === node.output) !== (next.inputs.b === node.output)) {
      const residual = next.inputs.a === node.output ? next.inputs.b : next.inputs.a;
      add(groups, grouped, [i], { kind: 'residual', node: next, residual }, c, [next.output]);
    } else if (next.op === 'activation') {
      add(groups, grouped, [i], { kind: 'act', node: next }, c, [next.output]);
    } else if (next.op === 'gatedActivation' && next.inputs.gate === node.output && next.inputs.up !== node.output) {
      const u = producer.get(next.inputs.up);
      if (u === undefined || grouped.has(u)) return;
      const up = nodes[u];
      if (up.op !== 'linear' || up.inputs.x !== node.inputs.x || usesOf(up.output).length !== 1 || !sameDtype(node, up)) return;
      add(groups, grouped, [i, u], { kind: 'gated', node: next }, c, [next.output]);
    }
  });

  // Linears on a shared input, up to 3 a group; the rest alone.
  const byInput = new Map<ValueId, number[]>();
  nodes.forEach((node, i) => {
    if (node.op === 'linear' && !grouped.has(i)) byInput.set(node.inputs.x, [...(byInput.get(node.inputs.x) ?? []), i]);
  });
  for (const list of byInput.values()) {
    let run: number[] = [];
    const flush = () => {
      if (run.length) add(groups, grouped, run, { kind: 'none' }, run[0], run.map((j) => nodes[j].output));
      run = [];
    };
    for (const i of list) {
      const joins = opts.linear && run.length > 0 && run.length < 3 && nodes[i].output !== graph.output && nodes[run[0]].output !== graph.output &&
        sameDtype(nodes[i], nodes[run[0]]);
      if (!joins) flush();
      run.push(i);
    }
    flush();
  }

  // Norms feeding exactly one group (and nothing else), over the whole row.
  if (opts.linear) {
    for (const g of groups) {
      const p = producer.get(g.input);
      if (p === undefined) continue;
      const norm = nodes[p];
      if (norm.op !== 'rmsNorm' && norm.op !== 'layerNorm') continue;
      if (norm.attrs.dim !== graph.values[norm.inputs.x].width) continue;
      const memberIdx = new Set(g.members.map((m) => nodes.indexOf(m)));
      if (!usesOf(g.input).every((u) => memberIdx.has(u))) continue;
      g.norm = norm;
      g.covers.unshift(p);
    }
  }

  const groupOf = new Map<number, LinearGroup>();
  const extraUses: ExtraUse[] = [];
  const earlyDefs: EarlyDef[] = [];
  for (const g of groups) {
    if (g.epilogue.kind === 'none') for (const m of g.members.slice(1)) earlyDefs.push([m.output, g.at]);
    for (const i of g.covers) groupOf.set(i, g);
    extraUses.push([g.input, g.at]);
    if (g.norm) extraUses.push([g.norm.inputs.x, g.at]);
    if (g.epilogue.kind === 'residual') extraUses.push([g.epilogue.residual, g.at]);
  }

  const rope = new Map<OpNode, RopeKv>();
  const ropeCovers = new Set<number>();
  nodes.forEach((node, i) => {
    if (node.op !== 'attention' || !opts.rope) return;
    const [qi, ki] = [producer.get(node.inputs.q), producer.get(node.inputs.k)];
    if (qi === undefined || ki === undefined || qi === ki) return;
    const [q, k] = [nodes[qi], nodes[ki]];
    if (q.op !== 'rotary' || k.op !== 'rotary') return;
    if (usesOf(q.output).length !== 1 || usesOf(k.output).length !== 1) return;
    const [a, b] = [q.attrs, k.attrs];
    const same = a.headDim === b.headDim && a.rotaryDim === b.rotaryDim && a.interleaved === b.interleaved && a.attentionScaling === b.attentionScaling &&
      a.invFreq.length === b.invFreq.length && a.invFreq.every((f, j) => f === b.invFreq[j]);
    if (!same || a.heads !== node.attrs.heads || b.heads !== node.attrs.kvHeads || a.headDim !== node.attrs.headDim) return;
    if (groupOf.has(qi) || groupOf.has(ki)) return;
    rope.set(node, { q, k, covers: [qi, ki] });
    ropeCovers.add(qi);
    ropeCovers.add(ki);
    extraUses.push([q.inputs.x, i], [k.inputs.x, i]);
  });
  const embeddingSums = new Map<OpNode, EmbeddingSum>();
  const embeddingCovers = new Set<number>();
  if (opts.embedding ?? opts.linear) {
    nodes.forEach((node) => {
      if (node.op !== 'add') return;
      const [ai, bi] = [producer.get(node.inputs.a), producer.get(node.inputs.b)];
      if (ai === undefined || bi === undefined || ai === bi) return;
      const [a, b] = [nodes[ai], nodes[bi]];
      if (a.op !== 'embedding' || b.op !== 'embedding') return;
      if (a.attrs.vocabShardStart !== undefined || b.attrs.vocabShardStart !== undefined) return; // a shard's misses wait for the all-reduce
      if (usesOf(a.output).length !== 1 || usesOf(b.output).length !== 1) return;
      if (opts.weightDtype && opts.weightDtype(a.attrs.table) !== opts.weightDtype(b.attrs.table)) return; // one kernel type
      embeddingSums.set(node, { a, b, covers: [ai, bi] });
      embeddingCovers.add(ai);
      embeddingCovers.add(bi);
    });
  }

  const reduceAdds = new Map<OpNode, ReduceAdd>();
  const reduceCovers = new Set<number>();
  const reduceAt = new Map<number, number>(); // an all-reduce run by an add's launch runs at the add
  if (opts.reduceAdd ?? opts.linear) {
    nodes.forEach((node, i) => {
      if (node.op !== 'add' || embeddingSums.has(node)) return;
      const { a, b } = node.inputs;
      const r = [producer.get(a), producer.get(b)].find((j) => j !== undefined && nodes[j].op === 'allReduce');
      if (r === undefined || a === b) return;
      const reduce = nodes[r] as OpNode<'allReduce'>;
      if (usesOf(reduce.output).length !== 1) return;
      reduceAdds.set(node, { reduce, residual: a === reduce.output ? b : a, covers: [r] });
      reduceCovers.add(r);
      reduceAt.set(r, i);
      extraUses.push([reduce.inputs.x, i]);
    });
  }

  const pushes = new Map<OpNode, LinearGroup>();
  const pushOf = new Map<LinearGroup, OpNode<'allReduce'>>();
  if (opts.push ?? opts.linear) {
    nodes.forEach((node, r) => {
      if (node.op !== 'allReduce') return;
      const p = producer.get(node.inputs.x);
      const g = p === undefined ? undefined : groupOf.get(p);
      if (!g || g.members.length !== 1 || g.epilogue.kind !== 'none' || usesOf(node.inputs.x).length !== 1) return;
      const at = reduceAt.get(r) ?? r;
      if (nodes.slice(g.at + 1, at).some((n) => n !== node && COLLECTIVE_KINDS.includes(n.op))) return;
      pushes.set(node, g);
      pushOf.set(g, node);
    });
  }

  const routerNorms = new Map<OpNode, OpNode<'rmsNorm'>>();
  const routerNormCovers = new Map<number, number>();
  if (opts.linear) {
    nodes.forEach((node, i) => {
      if (node.op !== 'moeRouter') return;
      const p = producer.get(node.inputs.x);
      if (p === undefined || groupOf.has(p)) return;
      const norm = nodes[p];
      if (norm.op !== 'rmsNorm' || norm.attrs.dim !== graph.values[norm.inputs.x].width || routerSharedBytes(node.attrs.experts, norm.attrs.dim, true) > ROUTER_SHARED_BYTES) return;
      // The router must be the first reader (fused launches included): the rest read what it writes.
      if (!readsOf(norm.output).every((at) => at >= i)) return;
      routerNorms.set(node, norm);
      routerNormCovers.set(p, i);
      extraUses.push([norm.inputs.x, i]);
    });
  }

  const gatherAlias = new Map<ValueId, ValueId>();
  nodes.forEach((node) => {
    if (node.op !== 'gatherRows' || node.output === graph.output) return;
    const root = gatherAlias.get(node.inputs.x) ?? node.inputs.x; // a gather of a skipped gather reads the first one's input
    gatherAlias.set(node.output, root);
    // Every read of the output, fused launches' included (a norm fused into the LM-head GEMV reads it there).
    for (const at of readsOf(node.output)) extraUses.push([root, at]);
  });
  return { groups, groupOf, rope, ropeCovers, embeddingSums, embeddingCovers, reduceAdds, reduceCovers, pushes, pushOf, routerNorms, routerNormCovers, gatherAlias, nextWeight: nextWeights(graph, groups), extraUses, earlyDefs };

  /** Node indices that read v: its consumers and the fused launches planned so far. */
  function readsOf(v: ValueId): number[] {
    return [...usesOf(v), ...extraUses.filter(([u]) => u === v).map(([, at]) => at)];
  }

  function sameDtype(a: OpNode, b: OpNode): boolean {
    if (a.op !== 'linear' || b.op !== 'linear' || !opts.weightDtype) return true;
    return opts.weightDtype(a.attrs.weight) === opts.weightDtype(b.attrs.weight);
  }

  function add(list: LinearGroup[], taken: Set<number>, members: number[], epilogue: Epilogue, at: number, outputs: ValueId[]): void {
    const ms = members.map((j) => nodes[j] as OpNode<'linear'>);
    const covers = [...members];
    if (epilogue.kind !== 'none') covers.push(at);
    for (const j of covers) taken.add(j);
    list.push({ members: ms, input: ms[0].inputs.x, norm: null, epilogue, outputs, at, covers });
  }
}

/**
 * What the linear launch after each attention node and each group reads first: the first member's weight of
 * the next group in launch order (a group launches at `at`; every linear belongs to a group).
 */
function nextWeights(graph: Graph, groups: LinearGroup[]): Map<OpNode | LinearGroup, WeightName> {
  const launches = [...groups].sort((a, b) => a.at - b.at);
  const after = (i: number) => launches.find((g) => g.at > i)?.members[0].attrs.weight;
  const out = new Map<OpNode | LinearGroup, WeightName>();
  graph.nodes.forEach((node, i) => {
    const w = node.op === 'attention' ? after(i) : undefined;
    if (w !== undefined) out.set(node, w);
  });
  for (const g of launches) {
    const w = after(g.at);
    if (w !== undefined) out.set(g, w);
  }
  return out;
}
