// A graph compiled for one GPU: weights and KV cache resident, activation buffers reused by liveness.
// run() uploads the step's int arrays once, launches the step's kernels in graph order on one stream
// (fused where exec-plan.ts says; step-launcher.ts owns the per-step buffers and the launching) and
// downloads only the output rows.
//
// Decode steps of up to maxGraphRows sequences replay a CUDA graph of their batch-size bucket
// (graph-buckets.ts); other steps, and steps under runObserved, run eagerly.
//
// With streamed weights (compile's options.stream) every step runs eagerly, node by node, while a
// StreamStep copies the layers into their slots ahead of the kernels (stream-step.ts). Such steps are never
// captured: a graph would freeze one step's slot contents and could not wait for the host-side acquires
// that a disk tier needs; at the batch sizes streaming is for, launches are a small part of a step.
import { BackendError, chainArgmaxSteps, chainSampleSteps, checkChain, checkSampleChain, checkSampleRows, nextDecodeStep, type FloatDType, type Graph, type KvBlockTransfer, type KvCacheSpec, type OpNode, type Program, type SampleRow, type StepBatch, type ValueId, type WeightName } from '@zinfer/core';
import type { BufferPlan } from './buffer-plan.js';
import type { ProgramCollectives } from './collective-launch.js';
import type { DeviceWeight } from './device-weights.js';
import type { ExecPlan } from './exec-plan.js';
import type { Gpu, LaunchHook } from './gpu.js';
import type { HostMemory } from './host-memory.js';
import { CudaKvTransfer } from './kv-transfer.js';
import { GraphBuckets } from './graph-buckets.js';
import { MoeTables } from './moe-tables.js';
import type { ProgramOptions } from './step-context.js';
import { packSampleRows } from './sample-launch.js';
import { StepLauncher } from './step-launcher.js';
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
  /** The backend's page-locked host memory, made on first use: KV-cache offload's host stores. */
  pinned?: () => HostMemory;
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

/** Where a step's f32 output rows are on the device (not yet synchronized). */
interface StepOutput {
  ptr: bigint;
  rows: number;
  width: number;
}

export class CudaProgram implements Program {
  private parts: ProgramParts | null;
  private readonly launcher: StepLauncher;
  private readonly graphs: GraphBuckets;
  /** The next step runs eagerly whatever its bucket (runObserved). */
  private eagerOnce = false;
  readonly stats: ProgramStats = { steps: 0, eagerSteps: 0, graphReplays: 0, graphCaptures: 0, graphError: null };
  /** MoE expert tables and routing counters (graphs with MoE nodes). */
  private readonly moe: MoeTables | null;

  constructor(parts: ProgramParts) {
    this.parts = parts;
    const padSlot = parts.kv ? parts.kv.scratchBlock * parts.kv.spec.blockSize : -1; // decode-graph padding rows write there
    this.moe = parts.graph.nodes.some((n) => n.op === 'moeRouter' || n.op === 'moeExperts') ? new MoeTables(parts.gpu, parts.graph, padSlot) : null;
    this.launcher = new StepLauncher(parts, this.moe);
    this.graphs = new GraphBuckets(parts, this.launcher, this.stats);
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

  /**
   * KV-cache blocks to and from page-locked host memory on the copy stream (KV-cache offload:
   * kv-transfer.ts). Absent without attention, or for a program compiled without the backend's host memory.
   */
  get kvBlocks(): KvBlockTransfer | undefined {
    const p = this.parts;
    if (!p?.kv || !p.pinned || !p.gpu.copyEngine) return undefined;
    return (this.kvTransfer ??= new CudaKvTransfer(p.gpu, p.kv, p.graph.kv.layers, p.pinned()));
  }

  private kvTransfer: CudaKvTransfer | null = null;

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
    const { ptr, rows, width } = await this.enqueue(p, batch);
    const out = new Float32Array(rows * width); // [outRows, width]
    if (out.length) p.gpu.download(out, ptr);
    else p.gpu.synchronize();
    return out;
  }

  /** Runs one step and waits for it, leaving its output on the GPU (a parallel rank nobody reads). */
  async runWithoutOutput(batch: StepBatch): Promise<void> {
    const p = this.live();
    await this.enqueue(p, batch);
    p.gpu.synchronize(); // the next step reuses the metadata buffers this one's launches read
  }

  /**
   * Runs one step and returns the argmax of each output row (greedy decoding), computed on the GPU so
   * only the token ids cross PCIe. Lowest id on ties; NaN never wins.
   */
  async runArgmax(batch: StepBatch): Promise<Int32Array> {
    return this.stepIds(this.live(), batch, (ptr, rows, width, ids) => this.launcher.argmax(ptr, rows, width, ids));
  }

  /**
   * `steps` greedy decode steps in one call (Program.runArgmaxSteps). Where the step replays a decode graph,
   * each step's argmax also writes its ids into the next step's token ids on the GPU, and the next step
   * uploads everything else: the steps follow each other on the stream with no host round trip between
   * them, and all their ids come back in one download. Other steps (eager decode, streamed weights, an
   * embedding an argmax id could miss) chain on the host, through runArgmax (core's chainArgmaxSteps).
   */
  async runArgmaxSteps(batch: StepBatch, steps: number): Promise<Int32Array> {
    const p = this.live();
    checkChain(batch, steps);
    return this.chainOnDevice(p, batch, steps, (ptr, rows, width, out, feed) => this.launcher.argmaxOnDevice(ptr, rows, width, out, feed))
      ?? chainArgmaxSteps(this, batch, steps, p.kv?.spec.blockSize ?? 1);
  }

  /**
   * `rows.length` sampled decode steps in one call (Program.runSampleSteps), chained as runArgmaxSteps
   * chains greedy ones: step j's sampling kernel picks with rows[j] (each step uploads its own params) and
   * writes the next step's token ids on the GPU. Every step's rows are checked and packed before any runs.
   */
  async runSampleSteps(batch: StepBatch, rows: readonly (readonly SampleRow[])[]): Promise<Int32Array> {
    const p = this.live();
    checkSampleChain(batch, rows);
    const packed = rows.map((r) => packedRows(p, batch, r));
    return this.chainOnDevice(p, batch, rows.length, (ptr, n, width, out, feed, j) => this.launcher.sampleOnDevice(ptr, width, packed[j], n, out, feed))
      ?? chainSampleSteps(this, batch, rows, p.kv?.spec.blockSize ?? 1);
  }

  /**
   * `steps` graphed decode steps from `batch`, each step's `pick` writing its ids into the chain's buffer
   * and into the next step's token ids; one download of the [steps, rows] ids at the end. Null (nothing
   * run) where the step would not replay a decode graph, or an id could miss a token embedding: the
   * caller then chains on the host.
   */
  private chainOnDevice(p: ProgramParts, batch: StepBatch, steps: number, pick: (ptr: bigint, rows: number, width: number, out: bigint, feed: bigint, j: number) => void): Int32Array | null {
    const bucket = p.streamed ? 0 : this.graphs.bucketOf(batch);
    if (bucket === 0 || !argmaxFeedsEmbedding(p)) return null;
    const blockSize = p.kv!.spec.blockSize;
    const rows = batch.tokenIds.length;
    const ids = this.launcher.chainIds(steps * rows);
    const fed = new Int32Array(rows); // the host's view of a fed step's token ids: written on the device
    let step = batch;
    let fedAt: bigint | undefined;
    for (let j = 0; j < steps; j++) {
      if (j > 0) step = nextDecodeStep(step, fed, blockSize);
      const { width } = this.begin(p, step);
      const ptr = this.graphs.run(step, bucket, fedAt);
      fedAt = j + 1 < steps ? this.graphs.tokenIdsAt(bucket) : undefined;
      pick(ptr, rows, width, ids + BigInt(j * rows * 4), fedAt ?? 0n, j);
    }
    const out = new Int32Array(steps * rows);
    p.gpu.download(out, ids);
    return out;
  }

  /**
   * Runs one step and returns the token each selected row samples with its SampleRow, picked on the GPU
   * as core's TokenFilter picks it (cuda/sample.cu), so only the token ids cross PCIe.
   */
  async runSample(batch: StepBatch, rows: readonly SampleRow[]): Promise<Int32Array> {
    const p = this.live();
    const packed = packedRows(p, batch, rows);
    return this.stepIds(p, batch, (ptr, n, width, ids) => this.launcher.sample(ptr, width, packed, n, ids));
  }

  /** Runs the step, then `pick` fills one token id per output row from the f32 output (none for an empty step). */
  private async stepIds(p: ProgramParts, batch: StepBatch, pick: (ptr: bigint, rows: number, width: number, ids: Int32Array) => void): Promise<Int32Array> {
    const { ptr, rows, width } = await this.enqueue(p, batch);
    const ids = new Int32Array(rows);
    if (rows > 0) pick(ptr, rows, width, ids);
    return ids;
  }

  /**
   * Runs one step eagerly (never from a graph) with the hook that `makeHook` builds for this program's Gpu
   * seeing every launch (kernel profiling), waits for it, and returns the hook. The Gpu must take hooks.
   * With `sample`, the step's rows are then picked as runSample picks them (the sampling kernel observed too).
   */
  async runObserved<H extends LaunchHook>(batch: StepBatch, makeHook: (gpu: Gpu) => H, sample?: readonly SampleRow[]): Promise<H> {
    const p = this.live();
    if (!p.gpu.setLaunchHook) throw new BackendError(`the Gpu ${p.gpu.name} cannot observe launches (no setLaunchHook)`);
    if (p.streamed) throw new BackendError('runObserved: a program with streamed weights is not profiled');
    const packed = sample ? packedRows(p, batch, sample) : null;
    const hook = makeHook(p.gpu);
    p.gpu.setLaunchHook(hook);
    this.eagerOnce = true;
    try {
      const { ptr, rows, width } = this.step(p, batch);
      if (packed && rows) this.launcher.sample(ptr, width, packed, rows, new Int32Array(rows));
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
    this.live();
    this.graphs.drop();
    this.launcher.invalidate();
  }

  async dispose(): Promise<void> {
    const p = this.parts;
    if (!p) return;
    this.parts = null;
    p.gpu.enter();
    this.graphs.dispose();
    this.launcher.free();
    for (const w of p.weights.values()) if (!w.shared) p.gpu.free(w.ptr);
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

  /** Checks the batch and counts the step; the output rows it will have (none, and nothing to launch, when `empty`). */
  private begin(p: ProgramParts, batch: StepBatch): { rows: number; width: number; empty: boolean } {
    this.launcher.check(batch);
    this.stats.steps++;
    const outInfo = p.graph.values[p.graph.output];
    const empty = Math.max(batch.tokenIds.length, batch.selectedRows.length) === 0;
    const rows = empty ? 0 : outInfo.rows === 'selected' ? batch.selectedRows.length : batch.tokenIds.length;
    return { rows, width: outInfo.width, empty };
  }

  /** The step as this program runs it: with its streamed weights (synchronized), or enqueued. */
  private enqueue(p: ProgramParts, batch: StepBatch): Promise<StepOutput> | StepOutput {
    return p.streamed ? this.streamedStep(p, p.streamed, batch) : this.step(p, batch);
  }

  /** Enqueues one step; returns where its f32 output rows are (not yet synchronized). */
  private step(p: ProgramParts, batch: StepBatch): StepOutput {
    const { rows, width, empty } = this.begin(p, batch);
    if (empty) return { ptr: 0n, rows, width };
    const bucket = this.eagerOnce ? 0 : this.graphs.bucketOf(batch);
    if (bucket !== 0) return { ptr: this.graphs.run(batch, bucket), rows, width };
    const { meta, base } = this.launcher.uploadEager(batch);
    this.stats.eagerSteps++;
    return { ptr: this.launcher.launchStep(meta, base), rows, width };
  }

  /** An eager step with streamed weights, synchronized (so every group is released) before it returns. */
  private async streamedStep(p: ProgramParts, streamed: StreamedWeights, batch: StepBatch): Promise<StepOutput> {
    const { rows, width, empty } = this.begin(p, batch);
    if (empty) return { ptr: 0n, rows, width };
    const { meta, base } = this.launcher.uploadEager(batch);
    this.stats.eagerSteps++;
    const s = streamed.step();
    let ptr: bigint;
    try {
      ptr = await this.launcher.launchStreamed(meta, base, s);
    } catch (e) {
      await s.settle(false);
      throw e;
    }
    await s.finish();
    return { ptr, rows, width };
  }
}

/**
 * Whether every id a pick of the output can give is a row of each token embedding (the host checks a
 * step's ids before it runs; a fed step's ids are never seen by the host). A vocabulary shard's misses are zeros.
 */
function argmaxFeedsEmbedding(p: ProgramParts): boolean {
  const width = p.graph.values[p.graph.output].width;
  return p.graph.nodes.every((node) => {
    if (node.op !== 'embedding' || node.inputs.ids !== p.graph.inputs.tokenIds || node.attrs.vocabShardStart !== undefined) return true;
    const rows = p.weights.get(node.attrs.table)?.shape[0] ?? 0;
    return node.attrs.offset >= 0 && width + node.attrs.offset <= rows;
  });
}

/** runSample's rows checked against the step and packed for the kernel, before the step runs (a refused call leaves the KV cache as it was). */
function packedRows(p: ProgramParts, batch: StepBatch, rows: readonly SampleRow[]): Uint8Array {
  checkSampleRows(batch, rows);
  return packSampleRows(rows, p.graph.values[p.graph.output].width);
}
