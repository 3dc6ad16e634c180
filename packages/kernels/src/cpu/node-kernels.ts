// One node of the rewritten graph as a kernel call: its argument block (layouts documented next to each
// kernel in asm/), and roughly what it costs, which decides whether it is split over the threads.
import { BackendError, type ActivationFn, type FloatDType, type OpNode, type StepBatch, type ValueId } from '@zinfer/core';
import type { CompiledGraph } from './compile.js';
import type { CpuNode, LinearGroup } from './fuse.js';
import { rowBlock } from './linear-layout.js';
import type { SlotCopies } from './slot-copies.js';
import type { StepData } from './step-data.js';
import type { ThreadPool } from './thread-pool.js';

const DTYPE_CODE: Record<FloatDType, number> = { f32: 0, f16: 1, bf16: 2 };
const ACT_CODE: Record<ActivationFn, number> = { relu: 1, silu: 2, gelu: 3, gelu_tanh: 4 };
/** Relative cost per element of each activation, for the parallel threshold. */
const ACT_COST: Record<ActivationFn, number> = { relu: 1, silu: 8, gelu: 40, gelu_tanh: 10 };

/** A step in flight: the batch, its row counts, its step data and where each float value lives. */
export interface Step {
  batch: StepBatch;
  rows: number;
  selected: number;
  data: StepData;
  /** Byte offset of each float value (a Float64Array: offsets reach 4 GiB). */
  at: Float64Array;
}

/** Kernel indices in the pool's table. */
export interface KernelIds {
  linear: number;
  embedding: number;
  rmsNorm: number;
  layerNorm: number;
  add: number;
  activation: number;
  rotary: number;
  kvWrite: number;
  attention: number;
}

export function kernelIds(pool: ThreadPool): KernelIds {
  const k = (name: string) => pool.kernel(name);
  return {
    linear: k('k_linear'), embedding: k('k_embedding'), rmsNorm: k('k_rms_norm'), layerNorm: k('k_layer_norm'), add: k('k_add'),
    activation: k('k_activation'), rotary: k('k_rotary'), kvWrite: k('k_kv_write'), attention: k('k_attention'),
  };
}

/** About how many multiply-adds a node costs (ctx: the step's longest context). */
export function nodeWork(c: CompiledGraph, n: CpuNode, rows: number, selected: number, ctx: number): number {
  const rowsOf = (v: ValueId) => (c.graph.values[v].rows === 'selected' ? selected : rows);
  const elements = (v: ValueId) => rowsOf(v) * c.graph.values[v].width;
  switch (n.op) {
    case 'linearGroup':
      return rowsOf(n.x) * c.graph.values[n.x].width * n.parts.reduce((s, p) => s + c.weights.get(p.weight)!.shape[0], 0);
    case 'attention':
      return rows * n.attrs.heads * ctx * n.attrs.headDim * 2;
    case 'activation':
    case 'gatedActivation':
      return elements(n.output) * ACT_COST[n.attrs.fn];
    case 'embedding':
    case 'rotary':
      return elements(n.output) * 2;
    case 'rmsNorm':
    case 'layerNorm':
      return elements(n.output) * 4;
    case 'add':
      return elements(n.output);
    default:
      return 0; // gatherRows (a copy) and the communication ops
  }
}

/** Runs compute nodes (collectives go through the communicator: see program.ts). */
export class NodeRunner {
  /** Copies of streamed weights the main thread makes while the workers run a kernel (a streaming program). */
  copies: SlotCopies | null = null;

  constructor(
    private readonly c: CompiledGraph,
    private readonly pool: ThreadPool,
    private readonly k: KernelIds,
    private readonly minParallelWork: number,
  ) {}

  run(node: CpuNode, index: number, s: Step, work: number): void {
    const { c, k } = this;
    const w = (name: string) => c.weights.get(name)!;
    const n = (v: ValueId) => this.rowsOf(v, s) * c.graph.values[v].width;
    switch (node.op) {
      case 'linearGroup':
        return this.linear(node, s, work);
      case 'embedding':
        return this.embedding(node, s, work);
      case 'rmsNorm': {
        const { weight, eps, dim } = node.attrs;
        return this.call(k.rmsNorm, work, [s.at[node.inputs.x], n(node.output) / dim, dim, w(weight).ptr, DTYPE_CODE[w(weight).dtype], eps, s.at[node.output]], [5]);
      }
      case 'layerNorm': {
        const { weight, bias, eps, dim } = node.attrs;
        const [wt, b] = [w(weight), w(bias)];
        return this.call(k.layerNorm, work, [s.at[node.inputs.x], n(node.output) / dim, dim, wt.ptr, DTYPE_CODE[wt.dtype], b.ptr, DTYPE_CODE[b.dtype], eps, s.at[node.output]], [7]);
      }
      case 'add':
        return this.call(k.add, work, [s.at[node.inputs.a], s.at[node.inputs.b], n(node.output), s.at[node.output]]);
      case 'activation':
        return this.call(k.activation, work, [ACT_CODE[node.attrs.fn], s.at[node.inputs.x], 0, n(node.output), s.at[node.output]]);
      case 'gatedActivation':
        return this.call(k.activation, work, [ACT_CODE[node.attrs.fn], s.at[node.inputs.gate], s.at[node.inputs.up], n(node.output), s.at[node.output]]);
      case 'rotary': {
        const { heads, headDim, rotaryDim, interleaved } = node.attrs;
        const t = s.data.rotary.get(index)!;
        return this.call(k.rotary, work, [s.at[node.inputs.x], this.rowsOf(node.output, s), heads, headDim, rotaryDim, interleaved ? 1 : 0, t.cos, t.sin, s.at[node.output]]);
      }
      case 'attention':
        return this.attention(node, s, work);
      case 'gatherRows': {
        const width = c.graph.values[node.output].width;
        const f32 = c.heap.f32;
        const [src, dst] = [s.at[node.inputs.x] >>> 2, s.at[node.output] >>> 2];
        s.batch.selectedRows.forEach((r, i) => f32.copyWithin(dst + i * width, src + r * width, src + (r + 1) * width));
        return;
      }
      default:
        throw new BackendError(`cpu backend has no op ${(node as OpNode).op}`);
    }
  }

  rowsOf(v: ValueId, s: Step): number {
    return this.c.graph.values[v].rows === 'selected' ? s.selected : s.rows;
  }

  /** Writes a kernel's argument block (f32 at the listed indices) and runs it, split when work is big enough. */
  private call(kernel: number, work: number, args: readonly number[], floats: readonly number[] = []): void {
    const { heap, args: at } = this.c;
    const i32 = heap.i32;
    const a = at >>> 2;
    for (let i = 0; i < args.length; i++) i32[a + i] = args[i];
    if (floats.length) {
      const f32 = heap.f32;
      for (const i of floats) f32[a + i] = args[i];
    }
    const parallel = work >= this.minParallelWork;
    // Overlap only while the copies left would keep this thread busy for its share of the kernel (a byte
    // copied costs about one multiply-add): else the kernel would just run on one thread fewer.
    const copies = this.copies;
    const background = copies !== null && parallel && copies.pendingBytes * this.pool.threads >= work ? copies.background : null;
    this.pool.run(kernel, at, parallel, background);
  }

  private embedding(node: Extract<OpNode, { op: 'embedding' }>, s: Step, work: number): void {
    const { table, offset, scale, vocabShardStart } = node.attrs;
    const t = this.c.weights.get(table)!;
    const ids = node.inputs.ids === this.c.graph.inputs.tokenIds ? s.batch.tokenIds : s.batch.positions;
    // A vocab shard (tensor parallelism) holds rows [vocabShardStart, + its rows): other ids give zero rows.
    const sharded = vocabShardStart !== undefined;
    if (!sharded) checkIds(ids, t.shape[0], table, offset);
    const args = [s.data.ints.get(node.inputs.ids)!, ids.length, t.ptr, DTYPE_CODE[t.dtype], t.shape[1], offset - (vocabShardStart ?? 0), scale, s.at[node.output], t.packed ? 1 : 0, sharded ? 1 : 0, t.shape[0]];
    this.call(this.k.embedding, work, args, [6]);
  }

  private linear(n: LinearGroup, s: Step, work: number): void {
    const { c } = this;
    const K = c.graph.values[n.x].width;
    const rows = this.rowsOf(n.x, s);
    const dtype = DTYPE_CODE[c.weights.get(n.parts[0].weight)!.dtype]; // one dtype per group (fuse.ts)
    const args = [s.at[n.x], rows, K, c.scratch.ptr, c.scratch.bytesPerThread, Math.min(rowBlock(K), rows), n.gated ? ACT_CODE[n.gated] : -1, n.parts.length];
    for (const p of n.parts) {
      const wt = c.weights.get(p.weight)!;
      const bias = p.bias === null ? null : c.weights.get(p.bias)!;
      const out = n.gated ? s.at[n.gatedOut] : s.at[p.out];
      args.push(wt.ptr, dtype, wt.shape[0], bias ? bias.ptr : 0, bias ? DTYPE_CODE[bias.dtype] : 0, out, p.residual === null ? 0 : s.at[p.residual], p.act ? ACT_CODE[p.act] : 0);
    }
    this.call(this.k.linear, work, args);
  }

  private attention(node: Extract<OpNode, { op: 'attention' }>, s: Step, work: number): void {
    const { c } = this;
    const kv = c.kv!; // compile placed a cache for every graph with attention
    const { layer, heads, kvHeads, headDim, scale, slidingWindow } = node.attrs;
    const rows = s.rows;
    this.call(this.k.kvWrite, rows * kv.width * 2, [s.at[node.inputs.k], s.at[node.inputs.v], rows, kv.width, s.data.slots, kv.k[layer], kv.v[layer]]);
    this.call(this.k.attention, work, [
      s.at[node.inputs.q], s.at[node.output], rows, heads, kvHeads, headDim, scale, slidingWindow ?? 0, kv.k[layer], kv.v[layer],
      s.data.rowSeq, s.data.seqs, s.data.tables, c.kvSpec.blockSize, c.scratch.ptr, c.scratch.bytesPerThread,
    ], [6]);
  }
}

/** An id outside the table is an error naming the table and the id, never a silent read. */
function checkIds(ids: Int32Array, vocab: number, table: string, offset: number): void {
  for (let r = 0; r < ids.length; r++) {
    const index = ids[r] + offset;
    if (!(index >= 0 && index < vocab)) {
      throw new BackendError(`embedding: token id ${ids[r]} (row ${r}) is outside table ${table}`, {
        tensor: table, expected: `ids in [${-offset}, ${vocab - offset})`, found: String(ids[r]),
      });
    }
  }
}
