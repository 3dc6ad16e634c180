import type { ActivationFn, OpKind, OpNode, OpSignatures, RotaryAttrs, ValueId, WeightName } from './ops.js';

/** What a value holds: float rows of `width`, or one int per row (token ids, positions). */
export interface ValueInfo {
  id: ValueId;
  kind: 'float' | 'int';
  width: number;
  /** 'tokens': one row per step token; 'selected': one row per logit row of the step. */
  rows: 'tokens' | 'selected';
}

/** Shape of every weight a graph reads, so backends can allocate and plans can shard. */
export interface WeightInfo {
  name: WeightName;
  shape: readonly number[];
}

/** Geometry of the paged KV cache that the attention nodes use. */
export interface KvLayout {
  layers: number;
  kvHeads: number;
  headDim: number;
}

/** One decoder step over a batch of sequences, as typed ops in execution order. */
export interface Graph {
  readonly nodes: readonly OpNode[];
  readonly values: readonly ValueInfo[];
  readonly inputs: { readonly tokenIds: ValueId; readonly positions: ValueId };
  readonly output: ValueId;
  readonly weights: ReadonlyMap<WeightName, WeightInfo>;
  readonly kv: KvLayout;
}

/** Builds graphs with widths checked as nodes are added, so architectures cannot wire a wrong shape. */
export class GraphBuilder {
  private readonly nodes: OpNode[] = [];
  private readonly values: ValueInfo[] = [];
  readonly inputs: { tokenIds: ValueId; positions: ValueId };

  constructor(private readonly weights: ReadonlyMap<WeightName, WeightInfo>, private readonly kv: KvLayout) {
    this.inputs = { tokenIds: this.value('int', 1, 'tokens'), positions: this.value('int', 1, 'tokens') };
  }

  width(v: ValueId): number {
    return this.values[v].width;
  }

  embedding(ids: ValueId, table: WeightName, opts: { offset?: number; scale?: number; vocabShardStart?: number } = {}): ValueId {
    const [, dim] = this.weight(table, 2);
    const attrs: OpSignatures['embedding']['attrs'] = { table, offset: opts.offset ?? 0, scale: opts.scale ?? 1 };
    if (opts.vocabShardStart !== undefined) attrs.vocabShardStart = opts.vocabShardStart;
    return this.node('embedding', { ids }, attrs, this.value('float', dim, this.rowsOf(ids)));
  }

  linear(x: ValueId, weight: WeightName, bias: WeightName | null = null): ValueId {
    const [out, inF] = this.weight(weight, 2);
    this.expectWidth(x, inF, weight);
    if (bias !== null) this.expectShape(bias, [out]);
    return this.node('linear', { x }, { weight, bias }, this.value('float', out, this.rowsOf(x)));
  }

  layerNorm(x: ValueId, weight: WeightName, bias: WeightName, eps: number): ValueId {
    const dim = this.width(x);
    this.expectShape(weight, [dim]);
    this.expectShape(bias, [dim]);
    return this.node('layerNorm', { x }, { weight, bias, eps, dim }, this.like(x));
  }

  rmsNorm(x: ValueId, weight: WeightName, eps: number, dim = this.width(x)): ValueId {
    this.expectShape(weight, [dim]);
    if (this.width(x) % dim !== 0) throw new Error(`rmsNorm dim ${dim} does not divide width ${this.width(x)}`);
    return this.node('rmsNorm', { x }, { weight, eps, dim }, this.like(x));
  }

  add(a: ValueId, b: ValueId): ValueId {
    this.expectWidth(b, this.width(a), 'add');
    return this.node('add', { a, b }, {}, this.like(a));
  }

  activation(x: ValueId, fn: ActivationFn): ValueId {
    return this.node('activation', { x }, { fn }, this.like(x));
  }

  gatedActivation(gate: ValueId, up: ValueId, fn: ActivationFn): ValueId {
    this.expectWidth(up, this.width(gate), 'gatedActivation');
    return this.node('gatedActivation', { gate, up }, { fn }, this.like(gate));
  }

  rotary(x: ValueId, attrs: RotaryAttrs): ValueId {
    this.expectWidth(x, attrs.heads * attrs.headDim, 'rotary');
    return this.node('rotary', { x, positions: this.inputs.positions }, attrs, this.like(x));
  }

  attention(q: ValueId, k: ValueId, v: ValueId, attrs: OpSignatures['attention']['attrs']): ValueId {
    this.expectWidth(q, attrs.heads * attrs.headDim, 'attention q');
    this.expectWidth(k, attrs.kvHeads * attrs.headDim, 'attention k');
    this.expectWidth(v, attrs.kvHeads * attrs.headDim, 'attention v');
    return this.node('attention', { q, k, v }, attrs, this.like(q));
  }

  gatherRows(x: ValueId): ValueId {
    return this.node('gatherRows', { x }, {}, this.value('float', this.width(x), 'selected'));
  }

  moeRouter(x: ValueId, weight: WeightName, topK: number, normalize: boolean): ValueId {
    const [experts] = this.weight(weight, 2);
    this.expectShape(weight, [experts, this.width(x)]);
    return this.node('moeRouter', { x }, { weight, experts, topK, normalize }, this.value('float', 2 * topK, this.rowsOf(x)));
  }

  moeExperts(x: ValueId, routing: ValueId, attrs: OpSignatures['moeExperts']['attrs']): ValueId {
    this.expectWidth(routing, 2 * attrs.topK, 'moeExperts routing');
    for (const e of attrs.experts) {
      const [inter] = this.weight(e.gate, 2);
      this.expectShape(e.gate, [inter, this.width(x)]);
      this.expectShape(e.up, [inter, this.width(x)]);
      this.expectShape(e.down, [this.width(x), inter]);
    }
    return this.node('moeExperts', { x, routing }, attrs, this.like(x));
  }

  sigmoidGate(x: ValueId, gate: ValueId): ValueId {
    this.expectWidth(gate, 1, 'sigmoidGate gate');
    return this.node('sigmoidGate', { x, gate }, {}, this.like(x));
  }

  allReduce(x: ValueId): ValueId {
    return this.node('allReduce', { x }, {}, this.like(x));
  }

  allGather(x: ValueId, ranks: number): ValueId {
    return this.node('allGather', { x }, { ranks }, this.value('float', this.width(x) * ranks, this.rowsOf(x)));
  }

  build(output: ValueId): Graph {
    return { nodes: [...this.nodes], values: [...this.values], inputs: this.inputs, output, weights: this.weights, kv: this.kv };
  }

  private node<K extends OpKind>(op: K, inputs: OpSignatures[K]['inputs'], attrs: OpSignatures[K]['attrs'], output: ValueId): ValueId {
    this.nodes.push({ op, inputs, attrs, output } as OpNode);
    return output;
  }

  private value(kind: ValueInfo['kind'], width: number, rows: ValueInfo['rows']): ValueId {
    const id = this.values.length;
    this.values.push({ id, kind, width, rows });
    return id;
  }

  private like(x: ValueId): ValueId {
    return this.value('float', this.width(x), this.rowsOf(x));
  }

  private rowsOf(x: ValueId): ValueInfo['rows'] {
    return this.values[x].rows;
  }

  private weight(name: WeightName, rank: number): readonly number[] {
    const w = this.weights.get(name);
    if (!w) throw new Error(`graph refers to weight ${name}, which the weight plan does not declare`);
    if (w.shape.length !== rank) throw new Error(`weight ${name} has rank ${w.shape.length}, op needs ${rank}`);
    return w.shape;
  }

  private expectShape(name: WeightName, shape: number[]): void {
    const found = this.weight(name, shape.length);
    if (found.some((d, i) => d !== shape[i])) throw new Error(`weight ${name} is [${found}], op needs [${shape}]`);
  }

  private expectWidth(x: ValueId, width: number, what: string): void {
    if (this.width(x) !== width) throw new Error(`${what}: input width ${this.width(x)}, expected ${width}`);
  }
}
