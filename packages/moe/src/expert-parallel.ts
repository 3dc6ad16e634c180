// Expert parallelism with expert slicing and tensor-sliced dense weights (the paper's hybrid). The dense
// part of the model (attention, dense MLPs, shared experts, embeddings, LM head) is tensor-sliced over all
// ranks by @zinfer/parallel's planner (or replicated); the experts are spread over size / tensor expert
// groups by the placement plugin, each expert sliced over its group's ranks. Every rank holds every token,
// so the experts' parts meet through one all-reduce per MoE layer, or through the all-to-all dispatch and
// combine (moeDispatch / moeCombine), optionally coordinated.
import { CONTRACT_VERSION, ConfigError, type Graph, type LaunchArgs, type OpNode, type ParallelPlan, type ParallelStrategy } from '@zinfer/core';
import { launchPlan, planTensorParallel } from '@zinfer/parallel';
import { resolveLayout, type ExpertParallelOptions, type MoeLayout } from './options.js';
import { rankMoeGraph } from './rank-experts.js';

export function expertParallel(opts: ExpertParallelOptions): ParallelStrategy & { contractVersion: number } {
  return {
    name: strategyName(opts),
    contractVersion: CONTRACT_VERSION,
    ranks: opts.size,
    plan: (graph: Graph) => planExpertParallel(graph, opts),
    launch: (args: LaunchArgs) => launchPlan(args, { ranks: opts.ranks, timeoutMs: opts.timeoutMs, nodes: opts.nodes }),
  };
}

function strategyName(opts: ExpertParallelOptions): string {
  const extra = [opts.tensor && opts.tensor > 1 ? `slices ${opts.tensor}` : '', opts.dense === 'replicated' ? 'dense replicated' : '', opts.dispatch === 'all-to-all' ? `all-to-all${opts.coordinated ? ' coordinated' : ''}` : ''];
  return `expert-parallel(${[String(opts.size), opts.placement?.name, ...extra].filter(Boolean).join(', ')})`;
}

export function planExpertParallel(graph: Graph, opts: ExpertParallelOptions): ParallelPlan {
  const moeNodes = graph.nodes.filter((n): n is OpNode<'moeExperts'> => n.op === 'moeExperts');
  if (moeNodes.length === 0) throw new ConfigError('expert parallelism needs a Mixture-of-Experts model', { field: 'parallel', expected: 'a model with MoE layers', found: 'no moeExperts op' });
  const layout = resolveLayout(opts, Math.min(...moeNodes.map((n) => n.attrs.experts.length)));
  const owners = moeNodes.map((n, layer) => placeLayer(opts, layout, n, layer));
  checkSliceable(graph, moeNodes, layout);
  const base = layout.dense === 'sliced' ? planTensorParallel(graph, layout.size).ranks : Array.from({ length: layout.size }, () => ({ graph, shards: [] }));
  return { ranks: base.map((r, rank) => rankMoeGraph(r.graph, r.shards, { layout, owners, rank })), stages: 1 };
}

function placeLayer(opts: ExpertParallelOptions, layout: MoeLayout, n: OpNode<'moeExperts'>, layer: number): Int32Array {
  const numExperts = n.attrs.experts.length;
  const owner = opts.placement.place({ layer, numExperts, ranks: layout.groups });
  if (owner.length !== numExperts || owner.some((g) => !Number.isInteger(g) || g < 0 || g >= layout.groups)) {
    throw new ConfigError(`placement ${opts.placement.name} gave an invalid owner list for MoE layer ${layer}`, { field: 'parallel.placement', expected: `${numExperts} expert groups in [0, ${layout.groups})`, found: Array.from(owner).join(',') });
  }
  // Indexed by expert id (the routing's ids), which the op's list order gives.
  const byId = new Int32Array(Math.max(...n.attrs.experts.map((e) => e.id)) + 1).fill(-1);
  n.attrs.experts.forEach((e, i) => (byId[e.id] = owner[i]));
  return byId;
}

function checkSliceable(graph: Graph, moeNodes: OpNode<'moeExperts'>[], layout: MoeLayout): void {
  if (layout.tensor === 1) return;
  for (const n of moeNodes) {
    const inter = graph.weights.get(n.attrs.experts[0].gate)!.shape[0];
    if (inter % layout.tensor !== 0) throw new ConfigError("expert slicing width does not divide the experts' intermediate size", { field: 'parallel.tensor', expected: `a divisor of ${inter}`, found: String(layout.tensor) });
  }
}
