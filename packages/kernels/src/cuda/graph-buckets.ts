// The decode-step CUDA graphs of a CudaProgram. Decode steps of up to maxGraphRows sequences are padded to
// their bucket (1, 2, 4, 8, then multiples of 16), the metadata goes into a device buffer owned by that
// bucket (its addresses stay put, so a graph can read it), and the bucket's graph of the whole step is
// launched with one call. A bucket's first step runs eagerly (sizing every buffer), its second captures;
// any buffer that grows afterwards invalidates the graphs (their addresses are stale: the launcher's
// generation moved). A bucket whose capture fails runs eagerly from then on (stats.graphError says why).
// A program whose attention cannot take the decode kernel (a head size it is not compiled for) decodes eagerly.
import { BackendError, type StepBatch } from '@zinfer/core';
import { decodeAttentionFits } from './attention-launch.js';
import type { GraphExec } from './gpu.js';
import type { ProgramParts, ProgramStats } from './program.js';
import type { StepLauncher } from './step-launcher.js';
import { isGraphableDecode, packStep, padDecodeBatch, type StepMetadata } from './step-metadata.js';

interface BucketGraph {
  meta: { ptr: bigint; bytes: number };
  /** Buffer generation it was captured (or warmed up) at. */
  generation: number;
  exec: GraphExec | null;
  /** Capture failed: this bucket runs eagerly. */
  failed: boolean;
}

export class GraphBuckets {
  private readonly buckets = new Map<number, BucketGraph>();
  /** Every attention takes the decode kernel, whose grid depends only on the batch size (else: eager decode). */
  private readonly replayable: boolean;

  constructor(
    private readonly p: ProgramParts,
    private readonly launcher: StepLauncher,
    private readonly stats: ProgramStats,
  ) {
    this.replayable = decodeAttentionFits(p.graph, p.act, p.kv?.fp8 === true);
  }

  /** The graph bucket of a decode step (rows up to 1, 2, 4, 8, then multiples of 16), or 0 to run it eagerly. */
  bucketOf(batch: StepBatch): number {
    const { options } = this.p;
    if (!options.graphs || !this.p.kv || !this.replayable || !isGraphableDecode(batch)) return 0;
    const rows = batch.tokenIds.length;
    if (rows > options.maxGraphRows) return 0;
    if (rows > 8) return Math.min(Math.ceil(rows / 16) * 16, Math.max(rows, options.maxGraphRows));
    let b = 1;
    while (b < rows) b *= 2;
    return b;
  }

  /**
   * Enqueues a decode step padded to `bucket`: replayed, captured, or eager as the bucket stands; returns the
   * f32 output. `fedAt`: a chained step, whose token ids the step before wrote on the device at that address
   * (tokenIdsAt): everything but the token ids is uploaded.
   */
  run(batch: StepBatch, bucket: number, fedAt?: bigint): bigint {
    const { gpu } = this.p;
    const spec = this.p.kv!.spec;
    const padded = padDecodeBatch(batch, bucket, spec.numBlocks, spec.blockSize);
    const meta = packStep(padded, spec.blockSize);
    const b = this.bucket(bucket, meta);
    if (fedAt === undefined) gpu.upload(b.meta.ptr, meta.ints);
    else {
      // The bucket's metadata has room for every block of the cache, so a decode step never moves it.
      if (b.meta.ptr + BigInt(meta.at.tokenIds * 4) !== fedAt) throw new BackendError('chained decode: the step\'s metadata moved after its token ids were written');
      gpu.upload(b.meta.ptr + BigInt(meta.at.positions * 4), meta.ints.subarray(meta.at.positions));
    }
    const generation = this.launcher.generation;
    if (b.failed) return this.eager(meta, b);
    if (b.exec && b.generation === generation) {
      gpu.launchGraph(b.exec);
      this.stats.graphReplays++;
      return this.launcher.outputPtr(meta);
    }
    if (b.generation === generation) return this.capture(b, meta);
    if (b.exec) gpu.destroyGraph(b.exec);
    b.exec = null;
    const ptr = this.eager(meta, b);
    b.generation = this.launcher.generation; // buffers are now sized for this bucket: capture next time
    return ptr;
  }

  /** Where the bucket's next step reads its token ids (a chained step's argmax writes them there); after run() of the bucket. */
  tokenIdsAt(bucket: number): bigint {
    const b = this.buckets.get(bucket);
    if (!b) throw new BackendError(`no decode metadata for the ${bucket}-row bucket yet`);
    return b.meta.ptr; // packStep puts the token ids first
  }

  /** Destroys the captured graphs: the next steps warm up and capture again. */
  drop(): void {
    for (const b of this.buckets.values()) {
      if (b.exec) this.p.gpu.destroyGraph(b.exec);
      b.exec = null;
    }
  }

  /** Destroys the graphs and frees the buckets' metadata (the program is being disposed). */
  dispose(): void {
    this.drop();
    for (const b of this.buckets.values()) this.p.gpu.free(b.meta.ptr);
    this.buckets.clear();
  }

  /** The bucket's state, its metadata buffer (re)allocated where it cannot hold `meta`. */
  private bucket(bucket: number, meta: StepMetadata): BucketGraph {
    const { gpu } = this.p;
    let b = this.buckets.get(bucket);
    if (b && b.meta.bytes >= meta.ints.byteLength) return b;
    if (b) {
      if (b.exec) gpu.destroyGraph(b.exec);
      gpu.free(b.meta.ptr);
    }
    // Room for the bucket's rows and every block of the cache (a decode step covers each block at most once).
    const bytes = Math.max(meta.ints.byteLength, (meta.at.blockTables + this.p.kv!.spec.numBlocks + bucket) * 4);
    b = { meta: { ptr: gpu.alloc(bytes, `decode graph metadata (${bucket} rows)`), bytes }, generation: -1, exec: null, failed: b?.failed ?? false };
    this.buckets.set(bucket, b);
    return b;
  }

  private eager(meta: StepMetadata, b: BucketGraph): bigint {
    this.stats.eagerSteps++;
    return this.launcher.launchStep(meta, b.meta.ptr);
  }

  /** Captures the bucket's step as a graph and launches it; on a failure marks the bucket eager and runs eagerly. */
  private capture(b: BucketGraph, meta: StepMetadata): bigint {
    const { gpu } = this.p;
    const generation = this.launcher.generation;
    let exec: GraphExec | null = null;
    let error: string | null = null;
    gpu.beginCapture();
    try {
      this.launcher.captureStep(meta, b.meta.ptr);
    } catch (e) {
      error = (e as Error).message;
    } finally {
      try {
        exec = gpu.endCapture();
      } catch (e) {
        error ??= (e as Error).message;
      }
    }
    if (error === null && generation !== this.launcher.generation) error = 'a buffer grew during capture';
    if (error !== null || !exec) {
      if (exec) gpu.destroyGraph(exec);
      b.failed = true;
      this.stats.graphError ??= `capture of the ${meta.rows}-row bucket failed: ${error}`;
      return this.eager(meta, b);
    }
    b.exec = exec;
    this.stats.graphCaptures++;
    gpu.launchGraph(exec);
    this.stats.graphReplays++;
    return this.launcher.outputPtr(meta);
  }
}
