// Expert parallelism: each rank holds the experts an ExpertPlacement gives it (and reads only their
// weights); attention, routers and shared experts run on every rank. Every rank has every token, so each
// computes its experts' share of the routed sum and one all-reduce per MoE layer combines the shares.
import { CONTRACT_VERSION, ConfigError, type ExpertPlacement, type Graph, type LaunchArgs, type OpNode, type ParallelPlan, type ParallelStrategy, type WeightInfo } from '@zinfer/core';
import { launchPlan } from '@zinfer/parallel';

export interface ExpertParallelOptions {
  /** Number of ranks the experts are spread over. */
  size: number;
  placement: ExpertPlacement;
  ranks?: 'workers' | 'inline';
}

export function expertParallel(opts: ExpertParallelOptions): ParallelStrategy & { contractVersion: number } {
  return {
    name: `expert-parallel(${opts.size}, ${opts.placement.name})`,
    contractVersion: CONTRACT_VERSION,
    ranks: opts.size,
    plan: (graph: Graph) => planExpertParallel(graph, opts.size, opts.placement),
    launch: (args: LaunchArgs) => launchPlan(args, { ranks: opts.ranks }),
  };
}

export function planExpertParallel(graph: Graph, size: number, placement: ExpertPlacement): ParallelPlan {
  if (!Number.isInteger(size) || size < 1) throw new ConfigError('invalid expert-parallel size', { field: 'parallel.size', expected: 'a positive integer', found: String(size) });
  const moeNodes = graph.nodes.filter((n): n is OpNode<'moeExperts'> => n.op === 'moeExperts');
  if (moeNodes.length === 0) throw new ConfigError('expert parallelism needs a Mixture-of-Experts model', { field: 'parallel', expected: 'a model with MoE layers', found: 'no moeExperts op' });
  const owners = moeNodes.map((n, layer) => {
    const owner = placement.place({ layer, numExperts: n.attrs.experts.length, ranks: size });
    if (owner.length !== n.attrs.experts.length || owner.some((r) => r < 0 || r >= size)) {
      throw new ConfigError(`placement ${placement.name} gave an invalid owner list for MoE layer ${layer}`, { field: 'placement', expected: `${n.attrs.experts.length} ranks in [0, ${size})`, found: Array.from(owner).join(',') });
    }
    return owner;
  });
  return { ranks: Array.from({ length: size }, (_, rank) => ({ graph: rankGraph(graph, moeNodes, owners, rank), shards: [] })), stages: 1 };
}

/** The graph with each moeExperts node cut to this rank's experts and followed by an allReduce. */
function rankGraph(graph: Graph, moeNodes: OpNode<'moeExperts'>[], owners: Int32Array[], rank: number): Graph {
  const values = [...graph.values];
  const nodes: OpNode[] = [];
  const dropped = new Set<string>();
  const rename = new Map<number, number>(); // moeExperts output → allReduce output
  for (const n of graph.nodes) {
    const remapped = remapInputs(n, rename);
    const layer = moeNodes.indexOf(n as OpNode<'moeExperts'>);
    if (layer < 0) {
      nodes.push(remapped);
      continue;
    }
    const moe = remapped as OpNode<'moeExperts'>;
    const mine = moe.attrs.experts.filter((_, i) => owners[layer][i] === rank);
    for (const e of moe.attrs.experts) if (!mine.includes(e)) [e.gate, e.up, e.down].forEach((w) => dropped.add(w));
    nodes.push({ ...moe, attrs: { ...moe.attrs, experts: mine } });
    const reduced = values.length;
    values.push({ ...values[n.output], id: reduced });
    nodes.push({ op: 'allReduce', inputs: { x: n.output }, attrs: {}, output: reduced });
    rename.set(n.output, reduced);
  }
  const weights = new Map<string, WeightInfo>([...graph.weights].filter(([name]) => !dropped.has(name)));
  return { ...graph, nodes, values, weights, output: rename.get(graph.output) ?? graph.output };
}

function remapInputs(n: OpNode, rename: Map<number, number>): OpNode {
  const inputs = Object.fromEntries(Object.entries(n.inputs as Record<string, number>).map(([k, v]) => [k, rename.get(v) ?? v]));
  return { ...n, inputs } as OpNode;
}
