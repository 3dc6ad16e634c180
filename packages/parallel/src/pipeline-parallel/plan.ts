// Pipeline stages: the graph's layers split into contiguous groups, one per stage. A stage receives the
// residual stream from the stage before it, runs its layers (with its own KV cache for them) and sends
// the stream on; the last stage ends in the model's head. Cut points are found from the dataflow: a
// place between nodes where only one activation is alive is a place the stream can cross a link.
import { ConfigError, type Graph, type OpNode, type ValueId, type ValueInfo, type WeightInfo, type WeightName } from '@zinfer/core';

export function planPipeline(graph: Graph, stages: number): Graph[] {
  const layers = graph.kv.layers;
  if (!Number.isInteger(stages) || stages < 1 || stages > layers) {
    throw new ConfigError('invalid number of pipeline stages', { field: 'parallel.stages', expected: `an integer from 1 to the model's ${layers} layers`, found: String(stages) });
  }
  const cuts = stageCuts(graph, stages);
  return cuts.slice(0, -1).map((start, s) => new StageBuilder(graph, s, stages, start, cuts[s + 1]).build());
}

/** Node indices where each stage starts, plus the end: stage s runs nodes [cuts[s], cuts[s + 1]). */
function stageCuts(graph: Graph, stages: number): number[] {
  const live = singleLiveValues(graph);
  const attentionAt = new Map<number, number>(); // layer → node index
  graph.nodes.forEach((n, i) => {
    if (n.op === 'attention') attentionAt.set(n.attrs.layer, i);
  });
  const cuts = [0];
  for (let s = 1; s < stages; s++) {
    const layer = Math.round((s * graph.kv.layers) / stages);
    // The last single-value point before this layer's attention and after the previous layer's.
    const lo = attentionAt.get(layer - 1)!;
    let p = attentionAt.get(layer)!;
    while (p > lo && !live.has(p)) p--;
    if (p <= lo) throw new ConfigError(`no place to cut the graph before layer ${layer}`, { field: 'parallel.stages', expected: 'a model whose layers pass one residual stream', found: String(stages) });
    cuts.push(p);
  }
  cuts.push(graph.nodes.length);
  return cuts;
}

/** Positions p (a cut before node p) where exactly one float value made earlier is still needed. */
function singleLiveValues(graph: Graph): Map<number, ValueId> {
  const lastUse = new Map<ValueId, number>();
  graph.nodes.forEach((n, i) => Object.values(n.inputs as Record<string, ValueId>).forEach((v) => lastUse.set(v, i)));
  lastUse.set(graph.output, graph.nodes.length);
  const result = new Map<number, ValueId>();
  const alive = new Set<ValueId>();
  graph.nodes.forEach((n, p) => {
    for (const v of [...alive]) if (lastUse.get(v)! < p) alive.delete(v);
    if (alive.size === 1) result.set(p, [...alive][0]);
    if (graph.values[n.output].kind === 'float') alive.add(n.output);
  });
  return result;
}

class StageBuilder {
  private readonly nodes: OpNode[] = [];
  private readonly values: ValueInfo[] = [];
  private readonly weights = new Map<WeightName, WeightInfo>();
  private readonly map = new Map<ValueId, ValueId>();
  private readonly firstLayer: number;
  private layers = 0;

  constructor(private readonly graph: Graph, private readonly stage: number, private readonly stages: number, private readonly start: number, private readonly end: number) {
    this.firstLayer = graph.nodes.slice(start, end).find((n): n is OpNode<'attention'> => n.op === 'attention')?.attrs.layer ?? 0;
  }

  build(): Graph {
    const g = this.graph;
    for (const id of [g.inputs.tokenIds, g.inputs.positions]) this.map.set(id, this.value(g.values[id]));
    const incoming = this.stage > 0 ? singleLiveValues(g).get(this.start)! : null;
    if (incoming !== null) this.map.set(incoming, this.emit('recv', { ids: this.map.get(g.inputs.tokenIds)! }, { peer: this.stage - 1, width: g.values[incoming].width }, g.values[incoming]));
    for (const n of g.nodes.slice(this.start, this.end)) this.copy(n);
    let output: ValueId;
    if (this.stage < this.stages - 1) {
      const outgoing = singleLiveValues(g).get(this.end)!;
      output = this.emit('send', { x: this.map.get(outgoing)! }, { peer: this.stage + 1 }, g.values[outgoing]);
    } else {
      output = this.map.get(g.output)!;
    }
    return {
      nodes: this.nodes, values: this.values, output, weights: this.weights,
      inputs: { tokenIds: this.map.get(g.inputs.tokenIds)!, positions: this.map.get(g.inputs.positions)! },
      kv: { ...g.kv, layers: this.layers },
    };
  }

  /** Copies a node with its inputs remapped, its weights recorded and attention layers renumbered from 0. */
  private copy(n: OpNode): void {
    const inputs = Object.fromEntries(Object.entries(n.inputs as Record<string, ValueId>).map(([k, v]) => [k, this.map.get(v)!]));
    let attrs: unknown = n.attrs;
    if (n.op === 'attention') {
      attrs = { ...n.attrs, layer: n.attrs.layer - this.firstLayer };
      this.layers = Math.max(this.layers, n.attrs.layer - this.firstLayer + 1);
    }
    for (const w of weightsOf(n)) this.weights.set(w, this.graph.weights.get(w)!);
    this.map.set(n.output, this.emit(n.op, inputs, attrs, this.graph.values[n.output]));
  }

  private emit(op: OpNode['op'], inputs: unknown, attrs: unknown, like: ValueInfo): ValueId {
    const out = this.value(like);
    this.nodes.push({ op, inputs, attrs, output: out } as OpNode);
    return out;
  }

  private value(info: ValueInfo): ValueId {
    const id = this.values.length;
    this.values.push({ ...info, id });
    return id;
  }
}

/** The weights a node reads. */
export function weightsOf(n: OpNode): WeightName[] {
  switch (n.op) {
    case 'embedding':
      return [n.attrs.table];
    case 'linear':
      return n.attrs.bias === null ? [n.attrs.weight] : [n.attrs.weight, n.attrs.bias];
    case 'layerNorm':
      return [n.attrs.weight, n.attrs.bias];
    case 'rmsNorm':
      return [n.attrs.weight];
    case 'moeRouter':
      return [n.attrs.weight];
    case 'moeExperts':
      return n.attrs.experts.flatMap((e) => [e.gate, e.up, e.down]);
    default:
      return [];
  }
}
