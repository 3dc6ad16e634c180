// A graph compiled for one GPU: weights and KV cache resident, activation buffers reused by liveness.
// run() uploads the step's int arrays once, launches the step's kernels in graph order on one stream
// (fused where exec-plan.ts says) and downloads only the output rows.
//
// Decode steps of up to maxGraphRows sequences replay a CUDA graph: the batch is padded to its bucket (1,
// 2, 4, 8, then multiples of 16), the metadata goes into a device buffer owned by that bucket, and the
// bucket's graph of the whole step is launched with one call. A bucket's first step runs eagerly (sizing
// every buffer), its second captures; any buffer that grows afterwards invalidates the graphs (their
// addresses are stale). A bucket whose capture fails runs eagerly from then on (stats.graphError says why).
//
// With streamed weights (compile's options.stream) every step runs eagerly, node by node, while a
// StreamStep copies the layers into their slots ahead of the kernels (stream-step.ts). Such steps are never
// captured: a graph would freeze one step's slot contents and could not wait for the host-side acquires
// that a disk tier needs; at the batch sizes streaming is for, launches are a small part of a step.
import { BackendError, type FloatDType, type Graph, type KvCacheSpec, type OpNode, type Program, type StepBatch, type ValueId, type WeightName } from '@zinfer/core';
import { validateBatch } from '../reference/batch.js';
import { KvCache } from '../reference/kv-cache.js';
import type { KvPointers } from './attention-launch.js';
import type { BufferPlan } from './buffer-plan.js';
import type { ProgramCollectives } from './collective-launch.js';
import type { DeviceWeight } from './device-weights.js';
import type { ExecPlan } from './exec-plan.js';
import type { Gpu, GraphExec, LaunchHook } from './gpu.js';
import { groupFuses, launchGroup } from './linear-launch.js';
import { MoeTables } from './moe-tables.js';
import { launchNode } from './op-launches.js';
import type { ProgramOptions, StepContext } from './step-context.js';
import { isGraphableDecode, packStep, padDecodeBatch, type StepMetadata } from './step-metadata.js';
import type { StreamStep } from './stream-step.js';
import type { StreamedWeights, StreamStats } from './streamed-weights.js';

export interface ProgramParts {
  gpu: Gpu;
  graph: Graph;
  weights: Map<WeightName, DeviceWeight>;
  /** The paged cache: per layer K then V, each [slots, kvHeads*headDim] in `act`; null without attention. */
  kv: { ptr: bigint; layerBytes: number; spec: KvCacheSpec; scratchBlock: number; fp8?: boolean } | null;
  invFreq: Map<OpNode, bigint>;
  act: FloatDType;
  plan: ExecPlan;
  buffers: BufferPlan;
  /** The graph output is written as f32 by its linear (else it is converted after the last node). */
  outputF32: boolean;
  options: ProgramOptions;
  /** Device collectives of the rank's groups (parallel plans); none for a plain graph. */
  collectives?: ProgramCollectives;
  /** Values stored as f32 in the 16-bit modes when outputF32 (default: the graph's output alone). */
  f32Values?: ReadonlySet<ValueId>;
  /** Weights streamed in while steps run (their slots, copy stream and events), when compiled with a stream. */
  streamed?: StreamedWeights | null;
}

interface Buffer {
  ptr: bigint;
  bytes: number;
}

interface BucketGraph {
  meta: Buffer;
  /** Buffer generation it was captured (or warmed up) at. */
  generation: number;
  exec: GraphExec | null;
  /** Capture failed: this bucket runs eagerly. */
  failed: boolean;
}

/** What the last steps did, for tests and tools. */
export interface ProgramStats {
  steps: number;
  eagerSteps: number;
  graphReplays: number;
  graphCaptures: number;
  /** Why graphs were turned off for this program, if they were. */
  graphError: string | null;
}

const NAN_BITS = 0x7fc00000;

export class CudaProgram implements Program {
  private parts: ProgramParts | null;
  private slots: (Buffer | null)[];
  private meta: Buffer | null = null;
  private scratchBuf: Buffer | null = null;
  private counterBuf: Buffer | null = null;
  private outBuf: Buffer | null = null;
  private argmaxBuf: Buffer | null = null;
  /** Bumped whenever a buffer is reallocated: graphs captured before hold stale addresses. */
  private generation = 0;
  private capturing = false;
  /** The next step runs eagerly whatever its bucket (runObserved). */
  private eagerOnce = false;
  private readonly buckets = new Map<number, BucketGraph>();
  readonly stats: ProgramStats = { steps: 0, eagerSteps: 0, graphReplays: 0, graphCaptures: 0, graphError: null };
  /** The reference's batch checks need only the cache's geometry: a KvCache of zero layers allocates nothing. */
  private readonly kvShape: KvCache | null;
  /** MoE expert tables and routing counters (graphs with MoE nodes). */
  private readonly moe: MoeTables | null;

  constructor(parts: ProgramParts) {
    this.parts = parts;
    this.slots = parts.buffers.slotRowBytes.map(() => null);
    this.kvShape = parts.kv ? new KvCache({ ...parts.graph.kv, layers: 0 }, parts.kv.spec) : null;
    const padSlot = parts.kv ? parts.kv.scratchBlock * parts.kv.spec.blockSize : -1; // decode-graph padding rows write there
    this.moe = parts.graph.nodes.some((n) => n.op === 'moeRouter' || n.op === 'moeExperts') ? new MoeTables(parts.gpu, parts.graph, padSlot) : null;
  }

  /** Device bytes held for weights and the KV cache. */
  get residentBytes(): { weights: number; kvCache: number } {
    const p = this.parts;
    let weights = 0;
    if (p) for (const w of p.weights.values()) weights += w.bytes;
    return { weights, kvCache: p?.kv ? p.kv.layerBytes * 2 * p.graph.kv.layers : 0 };
  }

  /** Streaming counters and the last step's copy/compute timeline; null for a program without streamed weights. */
  get streamStats(): StreamStats | null {
    return this.parts?.streamed?.stats ?? null;
  }

  /** Device bytes of the streamed weights' slots (0 without streaming). */
  get streamSlotBytes(): number {
    return this.parts?.streamed?.deviceBytes ?? 0;
  }

  /** The activation dtype the program computes in. */
  get activations(): FloatDType {
    if (!this.parts) throw new BackendError('cuda program was disposed');
    return this.parts.act;
  }

  async run(batch: StepBatch): Promise<Float32Array> {
    const p = this.live();
    const { ptr, rows, width } = p.streamed ? await this.streamedStep(p, p.streamed, batch) : this.step(p, batch);
    const out = new Float32Array(rows * width); // [outRows, width]
    if (out.length) p.gpu.download(out, ptr);
    else p.gpu.synchronize();
    return out;
  }

  /**
   * Runs one step and returns the argmax of each output row (greedy decoding), computed on the GPU so
   * only the token ids cross PCIe. Lowest id on ties; NaN never wins.
   */
  async runArgmax(batch: StepBatch): Promise<Int32Array> {
    const p = this.live();
    const { ptr, rows, width } = p.streamed ? await this.streamedStep(p, p.streamed, batch) : this.step(p, batch);
    const ids = new Int32Array(rows);
    if (rows === 0) return ids;
    this.argmaxBuf = this.grow(p.gpu, this.argmaxBuf, rows * 4, 'argmax output');
    p.gpu.launch('argmax_f32', { x: rows }, 256, [this.argmaxBuf.ptr, ptr, width]);
    p.gpu.download(ids, this.argmaxBuf.ptr);
    return ids;
  }

  /**
   * Runs one step eagerly (never from a graph) with the hook that `makeHook` builds for this program's Gpu
   * seeing every launch (kernel profiling), waits for it, and returns the hook. The Gpu must take hooks.
   */
  async runObserved<H extends LaunchHook>(batch: StepBatch, makeHook: (gpu: Gpu) => H): Promise<H> {
    const p = this.live();
    if (!p.gpu.setLaunchHook) throw new BackendError(`the Gpu ${p.gpu.name} cannot observe launches (no setLaunchHook)`);
    if (p.streamed) throw new BackendError('runObserved: a program with streamed weights is not profiled');
    const hook = makeHook(p.gpu);
    p.gpu.setLaunchHook(hook);
    this.eagerOnce = true;
    try {
      const { ptr, rows, width } = this.step(p, batch);
      const out = new Float32Array(rows * width);
      if (out.length) p.gpu.download(out, ptr);
      else p.gpu.synchronize();
    } finally {
      this.eagerOnce = false;
      p.gpu.setLaunchHook(null);
    }
    return hook;
  }

  /** Drops the captured decode graphs: the next steps warm up and capture again (after a kernel variant switch). */
  resetGraphs(): void {
    const p = this.live();
    this.dropGraphs(p);
    this.generation++;
  }

  async dispose(): Promise<void> {
    const p = this.parts;
    if (!p) return;
    this.parts = null;
    p.gpu.enter();
    this.dropGraphs(p);
    for (const b of this.buckets.values()) p.gpu.free(b.meta.ptr);
    this.buckets.clear();
    for (const b of [...this.slots, this.meta, this.scratchBuf, this.counterBuf, this.outBuf, this.argmaxBuf]) if (b) p.gpu.free(b.ptr);
    for (const w of p.weights.values()) p.gpu.free(w.ptr);
    for (const ptr of p.invFreq.values()) p.gpu.free(ptr);
    if (p.kv) p.gpu.free(p.kv.ptr);
    p.streamed?.dispose();
    this.moe?.dispose();
    p.gpu.dispose();
  }

  /** Tokens routed to each expert so far, per moeRouter node in graph order (padding rows of decode graphs not counted). */
  async expertLoad(): Promise<Float64Array[]> {
    this.live(); // makes the context current; throws once disposed
    return this.moe?.load() ?? [];
  }

  private live(): ProgramParts {
    const p = this.parts;
    if (!p) throw new BackendError('cuda program was disposed; compile the graph again to run it');
    p.gpu.enter();
    return p;
  }

  /** Enqueues one step; returns where its f32 output rows are (not yet synchronized). */
  private step(p: ProgramParts, batch: StepBatch): { ptr: bigint; rows: number; width: number } {
    validateBatch(batch, this.kvShape);
    checkEmbeddingIds(p, batch);
    this.stats.steps++;
    const outInfo = p.graph.values[p.graph.output];
    const realRows = outInfo.rows === 'selected' ? batch.selectedRows.length : batch.tokenIds.length;
    if (Math.max(batch.tokenIds.length, batch.selectedRows.length) === 0) return { ptr: 0n, rows: 0, width: outInfo.width };
    const bucket = this.bucketOf(p, batch);
    if (bucket === 0) {
      const meta = packStep(batch, p.kv?.spec.blockSize ?? 1);
      this.meta = this.grow(p.gpu, this.meta, meta.ints.byteLength, 'step metadata');
      p.gpu.upload(this.meta.ptr, meta.ints);
      this.stats.eagerSteps++;
      return { ptr: this.launchStep(p, meta, this.meta.ptr), rows: realRows, width: outInfo.width };
    }
    const padded = padDecodeBatch(batch, bucket, p.kv!.spec.numBlocks, p.kv!.spec.blockSize);
    const meta = packStep(padded, p.kv!.spec.blockSize);
    let b = this.buckets.get(bucket);
    if (!b || b.meta.bytes < meta.ints.byteLength) {
      if (b) {
        if (b.exec) p.gpu.destroyGraph(b.exec);
        p.gpu.free(b.meta.ptr);
      }
      // Room for the bucket's rows and every block of the cache (a decode step covers each block at most once).
      const bytes = Math.max(meta.ints.byteLength, (meta.at.blockTables + p.kv!.spec.numBlocks + bucket) * 4);
      b = { meta: { ptr: p.gpu.alloc(bytes, `decode graph metadata (${bucket} rows)`), bytes }, generation: -1, exec: null, failed: b?.failed ?? false };
      this.buckets.set(bucket, b);
    }
    p.gpu.upload(b.meta.ptr, meta.ints);
    let ptr: bigint;
    if (b.failed) {
      this.stats.eagerSteps++;
      ptr = this.launchStep(p, meta, b.meta.ptr);
    } else if (b.exec && b.generation === this.generation) {
      p.gpu.launchGraph(b.exec);
      this.stats.graphReplays++;
      ptr = this.outputPtr(p, meta);
    } else if (b.generation === this.generation) {
      ptr = this.capture(p, b, meta);
    } else {
      if (b.exec) p.gpu.destroyGraph(b.exec);
      b.exec = null;
      this.stats.eagerSteps++;
      ptr = this.launchStep(p, meta, b.meta.ptr);
      b.generation = this.generation; // buffers are now sized for this bucket: capture next time
    }
    return { ptr, rows: realRows, width: outInfo.width };
  }

  /** An eager step with streamed weights, synchronized (so every group is released) before it returns. */
  private async streamedStep(p: ProgramParts, streamed: StreamedWeights, batch: StepBatch): Promise<{ ptr: bigint; rows: number; width: number }> {
    validateBatch(batch, this.kvShape);
    checkEmbeddingIds(p, batch);
    this.stats.steps++;
    const outInfo = p.graph.values[p.graph.output];
    const rows = outInfo.rows === 'selected' ? batch.selectedRows.length : batch.tokenIds.length;
    if (Math.max(batch.tokenIds.length, batch.selectedRows.length) === 0) return { ptr: 0n, rows: 0, width: outInfo.width };
    const meta = packStep(batch, p.kv?.spec.blockSize ?? 1);
    this.meta = this.grow(p.gpu, this.meta, meta.ints.byteLength, 'step metadata');
    p.gpu.upload(this.meta.ptr, meta.ints);
    this.stats.eagerSteps++;
    const s = streamed.step();
    let ptr: bigint;
    try {
      const { ctx, kv } = this.prepare(p, meta, this.meta.ptr, s);
      s.start();
      for (let i = 0; i < p.graph.nodes.length; i++) {
        await s.before(i);
        this.launchAt(p, ctx, kv, i);
        s.after(i);
      }
      ptr = this.outputPtr(p, meta, ctx);
      p.gpu.synchronize();
    } catch (e) {
      await s.settle(false);
      throw e;
    }
    await s.finish();
    return { ptr, rows, width: outInfo.width };
  }

  /** The graph bucket of a decode step (rows up to 1, 2, 4, 8, then multiples of 16), or 0 to run it eagerly. */
  private bucketOf(p: ProgramParts, batch: StepBatch): number {
    if (this.eagerOnce || !p.options.graphs || !p.kv || !isGraphableDecode(batch)) return 0;
    const rows = batch.tokenIds.length;
    if (rows > p.options.maxGraphRows) return 0;
    if (rows > 8) return Math.min(Math.ceil(rows / 16) * 16, Math.max(rows, p.options.maxGraphRows));
    let b = 1;
    while (b < rows) b *= 2;
    return b;
  }

  /** Captures the bucket's step as a graph and launches it; on a failure marks the bucket eager and runs eagerly. */
  private capture(p: ProgramParts, b: BucketGraph, meta: StepMetadata): bigint {
    const generation = this.generation;
    let exec: GraphExec | null = null;
    let error: string | null = null;
    p.gpu.beginCapture();
    this.capturing = true;
    try {
      this.launchStep(p, meta, b.meta.ptr);
    } catch (e) {
      error = (e as Error).message;
    } finally {
      this.capturing = false;
      try {
        exec = p.gpu.endCapture();
      } catch (e) {
        error ??= (e as Error).message;
      }
    }
    if (error === null && generation !== this.generation) error = 'a buffer grew during capture';
    if (error !== null || !exec) {
      if (exec) p.gpu.destroyGraph(exec);
      b.failed = true;
      this.stats.graphError ??= `capture of the ${meta.rows}-row bucket failed: ${error}`;
      this.stats.eagerSteps++;
      return this.launchStep(p, meta, b.meta.ptr);
    }
    b.exec = exec;
    this.stats.graphCaptures++;
    p.gpu.launchGraph(exec);
    this.stats.graphReplays++;
    return this.outputPtr(p, meta);
  }

  /** Launches every node of the step (fused where the plan says); returns the f32 output's address. */
  private launchStep(p: ProgramParts, meta: StepMetadata, metaBase: bigint): bigint {
    const { ctx, kv } = this.prepare(p, meta, metaBase);
    for (let i = 0; i < p.graph.nodes.length; i++) this.launchAt(p, ctx, kv, i);
    return this.outputPtr(p, meta, ctx);
  }

  /** Sizes (and poisons) the activation buffers and builds the step's context. */
  private prepare(p: ProgramParts, meta: StepMetadata, metaBase: bigint, streamed?: StreamStep): { ctx: StepContext; kv: KvPointers | null } {
    this.reserveSlots(p, Math.max(meta.rows, meta.selected));
    if (p.options.poison) for (const s of this.slots) if (s) p.gpu.fill32(s.ptr, NAN_BITS, s.bytes / 4);
    return { ctx: this.context(p, meta, metaBase, streamed), kv: p.kv ? kvPointers(p.kv) : null };
  }

  /** Launches node i, or its fused group where the group runs, or nothing where another launch covers it. */
  private launchAt(p: ProgramParts, ctx: StepContext, kv: KvPointers | null, i: number): void {
    const { plan } = p;
    if (plan.ropeCovers.has(i)) return; // rotated by its attention's rope_kv launch
    const g = plan.groupOf.get(i);
    if (g && groupFuses(ctx, g)) {
      if (i === g.at) launchGroup(ctx, g);
      return;
    }
    launchNode(ctx, p.graph.nodes[i], kv);
  }

  /** The f32 output: the output value itself, or (16-bit output) its f32 copy made here. */
  private outputPtr(p: ProgramParts, meta: StepMetadata, ctx?: StepContext): bigint {
    const { graph } = p;
    const info = graph.values[graph.output];
    const rows = info.rows === 'selected' ? meta.selected : meta.rows;
    const value = this.slots[p.buffers.slotOf[graph.output]]!.ptr;
    if (p.act === 'f32' || p.outputF32) return value;
    const n = rows * info.width;
    if (ctx) {
      this.outBuf = this.grow(p.gpu, this.outBuf, n * 4, 'f32 output');
      if (n) p.gpu.launch(`to_f32_${p.act}`, { x: Math.max(1, Math.min(4096, Math.ceil(n / 256))) }, 256, [this.outBuf.ptr, value, n]);
    }
    return this.outBuf!.ptr;
  }

  private context(p: ProgramParts, meta: StepMetadata, metaBase: bigint, streamed?: StreamStep): StepContext {
    const { graph, buffers } = p;
    const metaPtr = (offset: number) => metaBase + BigInt(offset * 4);
    return {
      gpu: p.gpu,
      meta,
      metaPtr,
      act: p.act,
      plan: p.plan,
      options: p.options,
      value: (id: ValueId) => {
        if (id === graph.inputs.tokenIds) return metaPtr(meta.at.tokenIds);
        if (id === graph.inputs.positions) return metaPtr(meta.at.positions);
        const slot = buffers.slotOf[id];
        const buf = slot >= 0 ? this.slots[slot] : null;
        if (!buf) throw new BackendError(`value ${id} has no device buffer (read before it is computed?)`);
        return buf.ptr;
      },
      width: (id: ValueId) => graph.values[id].width,
      rowsOf: (id: ValueId) => (graph.values[id].rows === 'selected' ? meta.selected : meta.rows),
      isF32: (id: ValueId) => p.outputF32 && (p.f32Values ? p.f32Values.has(id) : id === graph.output),
      collectives: p.collectives ?? { tensor: null, pipeline: null },
      moe: this.moe,
      weight: (name: WeightName) => {
        const w = p.weights.get(name) ?? streamed?.weight(name);
        if (!w) throw new BackendError(`weight ${name} is not on the device`, { tensor: name });
        return w;
      },
      // Resident weights only: a streamed layer's slot may still be filling (prefetching it is wasted).
      maybeWeight: (name: WeightName) => p.weights.get(name) ?? null,
      invFreq: (node) => {
        const ptr = p.invFreq.get(node);
        if (ptr === undefined) throw new BackendError('rotary node has no inverse frequencies on the device');
        return ptr;
      },
      scratch: (bytes: number) => {
        this.scratchBuf = this.grow(p.gpu, this.scratchBuf, bytes, 'attention scratch');
        return this.scratchBuf.ptr;
      },
      counters: (n: number) => {
        const before = this.counterBuf;
        this.counterBuf = this.grow(p.gpu, this.counterBuf, n * 4, 'attention split counters');
        if (this.counterBuf !== before) p.gpu.fill32(this.counterBuf.ptr, 0, this.counterBuf.bytes / 4);
        return this.counterBuf.ptr;
      },
    };
  }

  /** Every slot buffer holds `rows` rows of its width; grown (never shrunk) as steps get larger. */
  private reserveSlots(p: ProgramParts, rows: number): void {
    p.buffers.slotRowBytes.forEach((rowBytes, i) => {
      this.slots[i] = this.grow(p.gpu, this.slots[i], rows * rowBytes, `activation buffer ${i} (${rows} rows × ${rowBytes} bytes)`);
    });
  }

  /** `buf` if it holds `bytes`, else a new buffer 1.5× larger (stream-ordered free of the old one). */
  private grow(gpu: Gpu, buf: Buffer | null, bytes: number, what: string): Buffer {
    if (buf && buf.bytes >= bytes) return buf;
    if (this.capturing) throw new BackendError(`${what} must grow during graph capture`);
    const size = Math.ceil(Math.max(bytes, buf ? buf.bytes * 1.5 : 0) / 256) * 256 || 256;
    if (buf) gpu.free(buf.ptr);
    this.generation++;
    return { ptr: gpu.alloc(size, what), bytes: size };
  }

  private dropGraphs(p: ProgramParts): void {
    for (const b of this.buckets.values()) {
      if (b.exec) p.gpu.destroyGraph(b.exec);
      b.exec = null;
    }
  }
}

function kvPointers(kv: NonNullable<ProgramParts['kv']>): KvPointers {
  const at = (i: number) => kv.ptr + BigInt(i) * BigInt(kv.layerBytes);
  return { k: (l) => at(2 * l), v: (l) => at(2 * l + 1), blockSize: kv.spec.blockSize, fp8: kv.fp8 === true };
}

/** An id outside its table rejects with a BackendError naming the table, as the reference does. */
function checkEmbeddingIds(p: ProgramParts, batch: StepBatch): void {
  for (const node of p.graph.nodes) {
    if (node.op !== 'embedding' || node.attrs.vocabShardStart !== undefined) continue; // a shard's misses are zeros
    const ids = node.inputs.ids === p.graph.inputs.positions ? batch.positions : batch.tokenIds;
    const vocab = p.weights.get(node.attrs.table)!.shape[0];
    const { offset, table } = node.attrs;
    for (let r = 0; r < ids.length; r++) {
      const index = ids[r] + offset;
      if (!(index >= 0 && index < vocab)) {
        throw new BackendError(`embedding: token id ${ids[r]} (row ${r}) is outside table ${table}`, { tensor: table, expected: `ids in [${-offset}, ${vocab - offset})`, found: String(ids[r]) });
      }
    }
  }
}
