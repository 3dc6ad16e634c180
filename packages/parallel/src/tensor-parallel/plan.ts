// Tensor slicing of a single-device graph into one graph per rank (Megatron-style, as in the paper):
// column-parallel q/k/v and gate/up (split by heads and by MLP width), row-parallel out/down projections
// followed by one all-reduce, a vocab-parallel token embedding (all-reduced) and LM head (all-gathered).
// GQA models with fewer KV heads than ranks replicate each KV head over the ranks that need it.
import { ConfigError, type Graph, type OpNode, type ParallelPlan, type ValueId, type ValueInfo, type WeightInfo, type WeightName, type WeightShard } from '@zinfer/core';
import { weightsOf } from '../pipeline-parallel/plan.js';
import { linearRoles, type LinearRole } from './roles.js';

/** How a value is held on a rank: whole, a column range of it, or a partial sum awaiting an all-reduce. */
type Layout = { kind: 'whole' } | { kind: 'columns'; start: number; length: number };

export function planTensorParallel(graph: Graph, size: number): ParallelPlan {
  if (!Number.isInteger(size) || size < 1) throw new ConfigError('invalid tensor-parallel size', { field: 'parallel.size', expected: 'a positive integer', found: String(size) });
  const roles = linearRoles(graph);
  return { ranks: Array.from({ length: size }, (_, rank) => new RankPlanner(graph, roles, rank, size).plan()), stages: 1 };
}

class RankPlanner {
  private readonly nodes: OpNode[] = [];
  private readonly values: ValueInfo[] = [];
  private readonly weights = new Map<WeightName, WeightInfo>();
  private readonly shards = new Map<WeightName, WeightShard>();
  /** Old value id → [new value id, layout]. */
  private readonly map = new Map<ValueId, [ValueId, Layout]>();
  private kvHeads: number;

  constructor(private readonly graph: Graph, private readonly roles: Map<number, LinearRole>, private readonly rank: number, private readonly size: number) {
    this.kvHeads = graph.kv.kvHeads;
  }

  plan(): { graph: Graph; shards: WeightShard[] } {
    const g = this.graph;
    for (const id of [g.inputs.tokenIds, g.inputs.positions]) this.map.set(id, [this.value(g.values[id]), { kind: 'whole' }]);
    g.nodes.forEach((n, i) => this.node(n, i));
    let [out, layout] = this.map.get(g.output)!;
    if (layout.kind === 'columns') out = this.emit('allGather', { x: out }, { ranks: this.size }, this.values[out].width * this.size, g.output);
    const graph: Graph = {
      nodes: this.nodes, values: this.values,
      inputs: { tokenIds: this.map.get(g.inputs.tokenIds)![0], positions: this.map.get(g.inputs.positions)![0] },
      output: out, weights: this.weights, kv: { ...g.kv, kvHeads: this.kvHeads },
    };
    return { graph, shards: [...this.shards.values()] };
  }

  private node(n: OpNode, index: number): void {
    const get = (v: ValueId) => this.map.get(v)!;
    switch (n.op) {
      case 'embedding': {
        const [ids] = get(n.inputs.ids);
        const [rows, dim] = this.shape(n.attrs.table);
        const shard = n.inputs.ids === this.graph.inputs.tokenIds && rows % this.size === 0 ? this.rangeOf(rows) : null;
        if (!shard) return this.keep(n, { ids }, n.attrs, dim);
        this.useWeight(n.attrs.table, 0, shard);
        const partial = this.emit('embedding', { ids }, { ...n.attrs, vocabShardStart: shard.start }, dim, n.output);
        return this.set(n.output, this.emit('allReduce', { x: partial }, {}, dim, n.output), { kind: 'whole' });
      }
      case 'linear':
        return this.linear(n, index);
      case 'layerNorm':
      case 'rmsNorm': {
        const [x, layout] = get(n.inputs.x);
        if (layout.kind === 'columns' && (n.op === 'layerNorm' || layout.start % n.attrs.dim !== 0 || layout.length % n.attrs.dim !== 0)) {
          throw new ConfigError(`tensor slicing cannot split a ${n.op} over ${n.attrs.dim} features`, { field: 'parallel.size', expected: 'head-aligned splits', found: String(this.size) });
        }
        this.useWeight(n.attrs.weight);
        if (n.op === 'layerNorm') this.useWeight(n.attrs.bias);
        return this.keep(n, { x }, n.attrs, this.widthOf(x), layout);
      }
      case 'rotary': {
        const [x, layout] = get(n.inputs.x);
        const [positions] = get(n.inputs.positions);
        return this.keep(n, { x, positions }, { ...n.attrs, heads: this.widthOf(x) / n.attrs.headDim }, this.widthOf(x), layout);
      }
      case 'attention': {
        const [q, layout] = get(n.inputs.q);
        const [k] = get(n.inputs.k);
        const [v] = get(n.inputs.v);
        const { headDim } = n.attrs;
        this.kvHeads = this.widthOf(k) / headDim;
        return this.keep(n, { q, k, v }, { ...n.attrs, heads: this.widthOf(q) / headDim, kvHeads: this.kvHeads }, this.widthOf(q), layout);
      }
      case 'activation': {
        const [x, layout] = get(n.inputs.x);
        return this.keep(n, { x }, n.attrs, this.widthOf(x), layout);
      }
      case 'gatedActivation': {
        const [gate, layout] = get(n.inputs.gate);
        const [up] = get(n.inputs.up);
        return this.keep(n, { gate, up }, n.attrs, this.widthOf(gate), layout);
      }
      case 'add': {
        const [a, la] = get(n.inputs.a);
        const [b, lb] = get(n.inputs.b);
        if (la.kind !== 'whole' || lb.kind !== 'whole') throw new Error('tensor slicing: an add of split values (plan bug)');
        return this.keep(n, { a, b }, n.attrs, this.widthOf(a));
      }
      case 'gatherRows': {
        const [x, layout] = get(n.inputs.x);
        return this.keep(n, { x }, n.attrs, this.widthOf(x), layout);
      }
      case 'moeRouter':
      case 'moeExperts':
      case 'sigmoidGate': {
        // Under tensor slicing the MoE block runs whole on every rank (expert parallelism splits it instead).
        const inputs = Object.fromEntries(Object.entries(n.inputs as Record<string, ValueId>).map(([k, v]) => {
          const [id, layout] = get(v);
          if (layout.kind !== 'whole') throw new Error(`tensor slicing: ${n.op} of a split value (plan bug)`);
          return [k, id];
        }));
        for (const w of weightsOf(n)) this.useWeight(w);
        return this.keep(n, inputs, n.attrs, this.graph.values[n.output].width);
      }
      case 'recv': {
        // A pipeline stage's incoming residual stream: every tensor rank of the stage receives it whole.
        const [ids] = get(n.inputs.ids);
        return this.keep(n, { ids }, n.attrs, n.attrs.width);
      }
      case 'send': {
        const [x, layout] = get(n.inputs.x);
        if (layout.kind !== 'whole') throw new Error('tensor slicing: a stage sends a split value (plan bug)');
        return this.keep(n, { x }, n.attrs, this.widthOf(x));
      }
      default:
        throw new ConfigError(`the graph is already tensor-parallel (it has a ${n.op} node)`, { field: 'parallel', expected: 'a graph without collectives', found: n.op });
    }
  }

  private linear(n: OpNode<'linear'>, index: number): void {
    const [x, layout] = this.map.get(n.inputs.x)!;
    const { weight, bias } = n.attrs;
    const [outF] = this.shape(weight);
    if (layout.kind === 'columns') {
      // Row-parallel: this rank's input columns meet the matching weight columns; the partial sums are
      // all-reduced, and the bias is added once (by rank 0) so the sum has it exactly once.
      this.useWeight(weight, 1, layout);
      const keepBias = bias !== null && this.rank === 0;
      if (keepBias) this.useWeight(bias);
      const partial = this.emit('linear', { x }, { weight, bias: keepBias ? bias : null }, outF, n.output);
      return this.set(n.output, this.emit('allReduce', { x: partial }, {}, outF, n.output), { kind: 'whole' });
    }
    const range = this.columnRange(this.roles.get(index), outF);
    if (!range) {
      this.useWeight(weight);
      if (bias !== null) this.useWeight(bias);
      return this.keep(n, { x }, n.attrs, outF);
    }
    this.useWeight(weight, 0, range);
    if (bias !== null) this.useWeight(bias, 0, range);
    this.set(n.output, this.emit('linear', { x }, n.attrs, range.length, n.output), { kind: 'columns', ...range });
  }

  /** The output columns this rank computes for a column-parallel linear, or null to replicate it. */
  private columnRange(role: LinearRole | undefined, outF: number): { start: number; length: number } | null {
    if (!role) return null;
    const s = this.size;
    switch (role.kind) {
      case 'query':
        this.divisible(role.heads, 'num_attention_heads');
        return this.rangeOf(outF);
      case 'keyValue': {
        if (role.kvHeads % s === 0) return this.rangeOf(outF);
        if (s % role.kvHeads !== 0) this.divisible(role.kvHeads, 'num_key_value_heads');
        // Fewer KV heads than ranks: the ranks whose query heads share a KV head each hold a copy of it.
        const head = Math.floor((this.rank * role.kvHeads) / s);
        return { start: head * role.headDim, length: role.headDim };
      }
      case 'ffn':
        this.divisible(outF, 'intermediate_size');
        return this.rangeOf(outF);
      case 'vocab':
        return outF % s === 0 ? this.rangeOf(outF) : null;
    }
  }

  private rangeOf(n: number): { start: number; length: number } {
    const length = n / this.size;
    return { start: this.rank * length, length };
  }

  private divisible(n: number, field: string): void {
    if (n % this.size !== 0) throw new ConfigError(`tensor-parallel size does not divide the model's ${field}`, { field: 'parallel.size', expected: `a divisor of ${field} (${n})`, found: String(this.size) });
  }

  private useWeight(name: WeightName, axis?: number, range?: { start: number; length: number }): void {
    const shape = [...this.shape(name)];
    if (axis !== undefined && range) {
      const shard: WeightShard = { weight: name, axis, start: range.start, length: range.length };
      const prev = this.shards.get(name);
      if (prev && (prev.axis !== axis || prev.start !== range.start || prev.length !== range.length)) throw new Error(`tensor slicing: weight ${name} needs two different shards (plan bug)`);
      this.shards.set(name, shard);
      shape[axis] = range.length;
    } else if (this.shards.has(name)) {
      throw new Error(`tensor slicing: weight ${name} is both sharded and whole (plan bug)`);
    }
    this.weights.set(name, { name, shape });
  }

  private shape(name: WeightName): readonly number[] {
    return this.graph.weights.get(name)!.shape;
  }

  /** Re-emits a node unchanged but for its (remapped) inputs and attrs. */
  private keep(n: OpNode, inputs: unknown, attrs: unknown, width: number, layout: Layout = { kind: 'whole' }): void {
    if (n.op === 'embedding') this.useWeight(n.attrs.table);
    this.set(n.output, this.emit(n.op, inputs, attrs, width, n.output), layout);
  }

  private emit(op: OpNode['op'], inputs: unknown, attrs: unknown, width: number, like: ValueId): ValueId {
    const out = this.value({ ...this.graph.values[like], width });
    this.nodes.push({ op, inputs, attrs, output: out } as OpNode);
    return out;
  }

  private value(info: ValueInfo): ValueId {
    const id = this.values.length;
    this.values.push({ ...info, id });
    return id;
  }

  private set(old: ValueId, id: ValueId, layout: Layout): void {
    this.map.set(old, [id, layout]);
  }

  private widthOf(v: ValueId): number {
    return this.values[v].width;
  }
}
