import { BackendError, checkSampleRows, COLLECTIVE_KINDS, HostRowSampler, hostMoeCombine, hostMoeDispatch, type Communicator, type Graph, type HostTensor, type KvBlockTransfer, type OpNode, type Program, type SampleRow, type StepBatch, type ValueId, type WeightName, type WeightStream } from '@zinfer/core';
import { activation } from './activations.js';
import { attention } from './attention.js';
import { validateBatch } from './batch.js';
import { embedding } from './embedding.js';
import type { KvCache } from './kv-cache.js';
import { hostKvBlocks } from './kv-block-transfer.js';
import { linear } from './linear.js';
import { countRouted, moeExperts, moeRouter, sigmoidGate } from './moe.js';
import { layerNorm, rmsNorm } from './norms.js';
import { rotary } from './rotary.js';
import { add, gatherRows } from './rows.js';
import { StreamStep, streamSchedule, type StreamSchedule } from './stream-step.js';

type Value = Float32Array | Int32Array;
type Weights = Pick<ReadonlyMap<WeightName, HostTensor>, 'get'>;

/** Interprets a graph node by node; every value is a fresh array, so the graph order is the whole schedule. */
export class ReferenceProgram implements Program {
  private state: { weights: ReadonlyMap<WeightName, HostTensor>; cache: KvCache } | null;
  private readonly hasAttention: boolean;
  private readonly schedule: StreamSchedule | null;
  /** Tokens routed to each expert since compile, per moeRouter node (graph order = MoE layer order). */
  private readonly routed: Map<OpNode, Float64Array>;
  private readonly sampler = new HostRowSampler();

  constructor(
    private readonly graph: Graph,
    weights: ReadonlyMap<WeightName, HostTensor>,
    cache: KvCache,
    private readonly comm: Communicator | null = null,
    private readonly pipeline: Communicator | null = null,
    /** Weights that are not in `weights`: acquired group by group while a step runs. */
    private readonly stream: WeightStream | null = null,
  ) {
    this.state = { weights, cache };
    this.hasAttention = graph.nodes.some((n) => n.op === 'attention');
    this.schedule = stream ? streamSchedule(graph, stream) : null;
    this.routed = new Map(graph.nodes.filter((n): n is OpNode<'moeRouter'> => n.op === 'moeRouter').map((n) => [n, new Float64Array(n.attrs.experts)]));
  }

  /** KV blocks to and from host memory (KV-cache offload): byte copies of the f32 cache arrays. */
  get kvBlocks(): KvBlockTransfer {
    const { layout, spec, width } = this.live().cache;
    return hostKvBlocks({
      layers: layout.layers, numBlocks: spec.numBlocks, blockLayerBytes: spec.blockSize * width * 4,
      layer: (l, kind) => {
        const { cache } = this.live();
        const a = (kind === 0 ? cache.k : cache.v)[l];
        return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      },
    });
  }

  private live(): NonNullable<ReferenceProgram['state']> {
    if (!this.state) throw new BackendError('reference program was disposed; compile the graph again to run it');
    return this.state;
  }

  async expertLoad(): Promise<Float64Array[]> {
    return [...this.routed.values()].map((counts) => counts.slice());
  }

  /** The engine's sampling step: run(), then each row's pick on the host (the spec kernels must match). */
  async runSample(batch: StepBatch, rows: readonly SampleRow[]): Promise<Int32Array> {
    checkSampleRows(batch, rows);
    return this.sampler.pick(await this.run(batch), rows, this.graph.values[this.graph.output].width);
  }

  async run(batch: StepBatch): Promise<Float32Array> {
    const state = this.live();
    validateBatch(batch, this.hasAttention ? state.cache : null);
    const { graph } = this;
    const values: Value[] = new Array(graph.values.length);
    values[graph.inputs.tokenIds] = batch.tokenIds;
    values[graph.inputs.positions] = batch.positions;
    const step = this.stream ? new StreamStep(graph, this.stream, this.schedule!, state.weights) : null;
    const weights: Weights = step ?? state.weights;
    try {
      for (const [i, node] of graph.nodes.entries()) {
        await step?.before(i);
        const out = isCommunication(node) ? await this.communicate(node, values, batch) : this.exec(node, values, batch, weights, state.cache);
        step?.after(i);
        const info = graph.values[node.output];
        const rows = info.rows === 'selected' ? batch.selectedRows.length : batch.tokenIds.length;
        if (out.length !== rows * info.width) throw new BackendError(`${node.op} produced ${out.length} elements for value ${node.output}, expected ${rows}×${info.width}`);
        values[node.output] = out;
      }
    } finally {
      await step?.abort(); // releases groups a failed step (or an unread group) still holds
    }
    return floatValue(values, graph.output);
  }

  /** Collectives and pipeline transfers: every rank reaches the same node in the same step, so calls pair up. */
  private async communicate(node: OpNode<CommunicationOp>, values: Value[], batch: StepBatch): Promise<Float32Array> {
    if (node.op === 'recv') {
      const out = new Float32Array(batch.tokenIds.length * node.attrs.width); // [rows, width]
      await this.pipeline!.recv(out, node.attrs.peer);
      return out;
    }
    const x = floatValue(values, node.inputs.x);
    if (node.op === 'send') {
      await this.pipeline!.send(x, node.attrs.peer);
      return x;
    }
    const comm = this.comm!; // compile refuses collective graphs without one
    if (node.op === 'moeDispatch' || node.op === 'moeCombine') {
      const { exchange, topK } = node.attrs;
      const routing = floatValue(values, node.inputs.routing);
      const width = this.graph.values[node.inputs.x].width;
      if (node.op === 'moeCombine') return hostMoeCombine(comm, exchange, x, width, routing, topK);
      return hostMoeDispatch(comm, exchange, x, width, routing, topK, node.attrs.part);
    }
    if (node.op === 'allReduce') {
      const out = x.slice();
      await comm.allReduce(out);
      return out;
    }
    const ranks = node.attrs.ranks;
    const width = this.graph.values[node.inputs.x].width;
    const rows = x.length / width;
    const flat = new Float32Array(x.length * ranks); // [ranks, rows, width] as the communicator gathers it
    await comm.allGather(x, flat);
    const out = new Float32Array(flat.length); // [rows, ranks * width]
    for (let r = 0; r < ranks; r++) {
      for (let i = 0; i < rows; i++) out.set(flat.subarray((r * rows + i) * width, (r * rows + i + 1) * width), (i * ranks + r) * width);
    }
    return out;
  }

  async dispose(): Promise<void> {
    this.state = null; // drops weights and KV cache for the garbage collector
  }

  private exec(node: OpNode, values: Value[], batch: StepBatch, weights: Weights, cache: KvCache): Float32Array {
    const f = (id: ValueId) => floatValue(values, id);
    const w = (name: WeightName) => weights.get(name)!; // compile loaded every resident weight; the step holds the streamed ones
    switch (node.op) {
      case 'embedding': {
        const { table, offset, scale, vocabShardStart } = node.attrs;
        return embedding(intValue(values, node.inputs.ids), w(table), table, offset, scale, vocabShardStart);
      }
      case 'linear': {
        const x = f(node.inputs.x);
        const weight = w(node.attrs.weight);
        return linear(x, x.length / weight.shape[1], weight, node.attrs.bias === null ? null : w(node.attrs.bias));
      }
      case 'layerNorm':
        return layerNorm(f(node.inputs.x), node.attrs.dim, w(node.attrs.weight), w(node.attrs.bias), node.attrs.eps);
      case 'rmsNorm':
        return rmsNorm(f(node.inputs.x), node.attrs.dim, w(node.attrs.weight), node.attrs.eps);
      case 'add':
        return add(f(node.inputs.a), f(node.inputs.b));
      case 'activation':
        return activation(node.attrs.fn, f(node.inputs.x));
      case 'gatedActivation':
        return activation(node.attrs.fn, f(node.inputs.gate), f(node.inputs.up));
      case 'rotary':
        return rotary(f(node.inputs.x), intValue(values, node.inputs.positions), node.attrs);
      case 'attention':
        return attention(f(node.inputs.q), f(node.inputs.k), f(node.inputs.v), node.attrs, cache, batch);
      case 'moeRouter': {
        const x = f(node.inputs.x);
        const { weight, topK, normalize } = node.attrs;
        const routing = moeRouter(x, x.length / this.graph.values[node.inputs.x].width, w(weight), topK, normalize);
        countRouted(this.routed.get(node)!, routing, topK);
        return routing;
      }
      case 'moeExperts': {
        const x = f(node.inputs.x);
        const experts = node.attrs.experts.map((e) => ({ id: e.id, gate: w(e.gate), up: w(e.up), down: w(e.down) }));
        return moeExperts(x, x.length / this.graph.values[node.inputs.x].width, f(node.inputs.routing), node.attrs.topK, node.attrs.fn, experts);
      }
      case 'sigmoidGate':
        return sigmoidGate(f(node.inputs.x), f(node.inputs.gate));
      case 'gatherRows':
        return gatherRows(f(node.inputs.x), this.graph.values[node.inputs.x].width, batch.selectedRows);
      default:
        throw new BackendError(`reference backend has no op ${(node as OpNode).op}`);
    }
  }
}

type CommunicationOp = 'allReduce' | 'allGather' | 'send' | 'recv' | 'moeDispatch' | 'moeCombine';

function isCommunication(node: OpNode): node is OpNode<CommunicationOp> {
  return COLLECTIVE_KINDS.includes(node.op);
}

function floatValue(values: Value[], id: ValueId): Float32Array {
  const v = values[id];
  if (!(v instanceof Float32Array)) throw new BackendError(`value ${id} is read before it is computed or is not a float value`);
  return v;
}

function intValue(values: Value[], id: ValueId): Int32Array {
  const v = values[id];
  if (!(v instanceof Int32Array)) throw new BackendError(`value ${id} is not an int value (token ids or positions)`);
  return v;
}
