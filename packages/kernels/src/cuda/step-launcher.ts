// The per-step device buffers of a CudaProgram and the launching of one step on them: the activation slots
// (reused by liveness, grown never shrunk), the eager steps' metadata, attention scratch and split
// counters, the f32 output copy, the argmax ids and the sampling buffers. A step's kernels see them
// through the StepContext built here, and launch in graph order (fused where exec-plan.ts says).
//
// Every reallocation of a buffer that graphs use bumps `generation`: a decode graph captured before it
// holds stale addresses (graph-buckets.ts compares generations). While a graph is captured no buffer may
// grow (a capture cannot allocate), so growing then throws and the capture is abandoned.
import { BackendError, type StepBatch, type ValueId, type WeightName } from '@zinfer/core';
import { validateBatch } from '../reference/batch.js';
import { KvCache } from '../reference/kv-cache.js';
import type { KvPointers } from './attention-launch.js';
import { BATCHED_MAX_ROWS, BATCHED_MIN_ROWS, batchedGemmMode, batchedGroup, launchBatched, type BatchedGroup } from './batched-gemm.js';
import { groupFuses, launchGroup } from './linear-launch.js';
import type { MoeTables } from './moe-tables.js';
import { launchNode } from './op-launches.js';
import type { ProgramParts } from './program.js';
import { dtypeBytes, type StepContext } from './step-context.js';
import { SAMPLE_PARAM_BYTES, SAMPLE_THREADS, sampleClusterBlocks } from './sample-launch.js';
import { packStep, type StepMetadata } from './step-metadata.js';
import type { StreamStep } from './stream-step.js';

interface Buffer {
  ptr: bigint;
  bytes: number;
}

const NAN_BITS = 0x7fc00000;
/** ARGMAX_THREADS and ARGMAX_CHUNK in cuda/argmax.cu: the logits one block of argmax_f32 reduces. */
const ARGMAX_THREADS = 256;
const ARGMAX_CHUNK = ARGMAX_THREADS * 8;

export class StepLauncher {
  private readonly slots: (Buffer | null)[];
  private meta: Buffer | null = null;
  private scratchBuf: Buffer | null = null;
  private counterBuf: Buffer | null = null;
  private outBuf: Buffer | null = null;
  private argmaxBuf: Buffer | null = null;
  private argmaxCounters: Buffer | null = null;
  private chainBuf: Buffer | null = null;
  private sampleIn: Buffer | null = null;
  private sampleWork: Buffer | null = null;
  private gen = 0;
  private capturing = false;
  /** Linear groups that run as one strided batch over 9–64 rows, each with its output buffer (batched-gemm.ts). */
  private readonly batched: { b: BatchedGroup; first: number; nodes: Set<number>; buf: Buffer | null }[] = [];
  /** Node index → its batched group; output value → [group, member]. */
  private readonly batchedAt = new Map<number, number>();
  private readonly batchedOut = new Map<ValueId, [number, number]>();
  /** Whether this step runs the batched groups as batches (set by prepare). */
  private batching = false;
  /** The reference's batch checks need only the cache's geometry: a KvCache of zero layers allocates nothing. */
  private readonly kvShape: KvCache | null;

  constructor(
    private readonly p: ProgramParts,
    private readonly moe: MoeTables | null,
  ) {
    this.slots = p.buffers.slotRowBytes.map(() => null);
    this.kvShape = p.kv ? new KvCache({ ...p.graph.kv, layers: 0 }, p.kv.spec) : null;
    const f32 = (v: ValueId) => p.outputF32 && (p.f32Values ? p.f32Values.has(v) : v === p.graph.output);
    for (const g of new Set(p.plan.groupOf.values())) {
      const b = batchedGroup(g, (name) => p.weights.get(name) ?? null, p.act);
      if (!b || b.outputs.some(f32)) continue;
      const nodes = b.members.map((m) => p.graph.nodes.indexOf(m));
      const k = this.batched.push({ b, first: nodes[0], nodes: new Set(nodes), buf: null }) - 1;
      for (const i of nodes) this.batchedAt.set(i, k);
      b.outputs.forEach((v, i) => this.batchedOut.set(v, [k, i]));
    }
  }

  /** Bumped whenever a buffer is reallocated (or graphs are reset): graphs captured before hold stale addresses. */
  get generation(): number {
    return this.gen;
  }

  /** Makes every captured graph stale, as a reallocation would. */
  invalidate(): void {
    this.gen++;
  }

  /** The batch checks of the reference, and embedding ids inside their tables. */
  check(batch: StepBatch): void {
    validateBatch(batch, this.kvShape);
    checkEmbeddingIds(this.p, batch);
  }

  /** Packs an eager step's metadata and uploads it into the program's metadata buffer. */
  uploadEager(batch: StepBatch): { meta: StepMetadata; base: bigint } {
    const meta = packStep(batch, this.p.kv?.spec.blockSize ?? 1);
    this.meta = this.grow(this.meta, meta.ints.byteLength, 'step metadata');
    this.p.gpu.upload(this.meta.ptr, meta.ints);
    return { meta, base: this.meta.ptr };
  }

  /** Launches every node of the step (fused where the plan says); returns the f32 output's address. */
  launchStep(meta: StepMetadata, metaBase: bigint): bigint {
    const { ctx, kv } = this.prepare(meta, metaBase);
    for (let i = 0; i < this.p.graph.nodes.length; i++) this.launchAt(ctx, kv, i);
    return this.outputPtr(meta, ctx);
  }

  /** launchStep while a graph is captured: a buffer that would grow throws instead. */
  captureStep(meta: StepMetadata, metaBase: bigint): void {
    this.capturing = true;
    try {
      this.launchStep(meta, metaBase);
    } finally {
      this.capturing = false;
    }
  }

  /** Launches the step node by node behind the stream step's copies, then synchronizes; returns the f32 output. */
  async launchStreamed(meta: StepMetadata, metaBase: bigint, s: StreamStep): Promise<bigint> {
    const { ctx, kv } = this.prepare(meta, metaBase, s);
    s.start();
    for (let i = 0; i < this.p.graph.nodes.length; i++) {
      await s.before(i);
      this.launchAt(ctx, kv, i);
      s.after(i);
    }
    const ptr = this.outputPtr(meta, ctx);
    this.p.gpu.synchronize();
    return ptr;
  }

  /**
   * The f32 output: the output value itself, or (16-bit output) its f32 copy, made here when `ctx` is
   * given (an eager step); a replayed graph made it already.
   */
  outputPtr(meta: StepMetadata, ctx?: StepContext): bigint {
    const { graph, gpu } = this.p;
    const info = graph.values[graph.output];
    const rows = info.rows === 'selected' ? meta.selected : meta.rows;
    const value = this.slots[this.p.buffers.slotOf[graph.output]]!.ptr;
    if (this.p.act === 'f32' || this.p.outputF32) return value;
    const n = rows * info.width;
    if (ctx) {
      this.outBuf = this.grow(this.outBuf, n * 4, 'f32 output');
      if (n) gpu.launch(`to_f32_${this.p.act}`, { x: Math.max(1, Math.min(4096, Math.ceil(n / 256))) }, 256, [this.outBuf.ptr, value, n]);
    }
    return this.outBuf!.ptr;
  }

  /**
   * Downloads the argmax of each of `rows` f32 rows at `ptr` (computed on the GPU, so only ids cross PCIe).
   * One buffer holds the ids [rows] and the blocks' partial values and ids [rows, blocks] each, laid out
   * anew for each call's rows; the row counters have a buffer of their own, zeroed when allocated and left
   * zero by every launch, so no call's layout ever puts other data where a counter is read.
   */
  argmax(ptr: bigint, rows: number, width: number, ids: Int32Array): void {
    this.p.gpu.download(ids, this.argmaxOnDevice(ptr, rows, width, null, 0n));
  }

  /**
   * Launches the argmax of `rows` f32 rows at `ptr`; returns where the ids are. `out` (else the argmax
   * buffer) receives them, and `feed` too where not 0n: a chained decode's next token ids (runArgmaxSteps).
   */
  argmaxOnDevice(ptr: bigint, rows: number, width: number, out: bigint | null, feed: bigint): bigint {
    const blocks = Math.ceil(width / ARGMAX_CHUNK);
    this.argmaxBuf = this.grow(this.argmaxBuf, (rows + 2 * rows * blocks) * 4, 'argmax output', false);
    const before = this.argmaxCounters;
    this.argmaxCounters = this.grow(this.argmaxCounters, rows * 4, 'argmax row counters', false);
    if (this.argmaxCounters !== before) this.p.gpu.fill32(this.argmaxCounters.ptr, 0, this.argmaxCounters.bytes / 4);
    const base = this.argmaxBuf.ptr;
    const at = (ints: number) => base + BigInt(ints * 4);
    const ids = out ?? base;
    this.p.gpu.launch('argmax_f32', { x: rows, y: blocks }, ARGMAX_THREADS, [ids, feed, ptr, width, at(rows), at(rows + rows * blocks), this.argmaxCounters.ptr]);
    return ids;
  }

  /** A device buffer of `ints` int32s for a chained decode's ids (grown, never inside a graph). */
  chainIds(ints: number): bigint {
    this.chainBuf = this.grow(this.chainBuf, ints * 4, 'chained decode ids', false);
    return this.chainBuf.ptr;
  }

  /**
   * Downloads the token each of the `n` f32 rows at `ptr` samples with its packed SampleRow (sample-launch.ts,
   * cuda/sample.cu), each row split over a cluster of blocks. One buffer holds the packed rows and
   * penalized ids; another the kernel's scratch rows, weights (f64) [rows, width] then scores (f32)
   * [rows, width], and the picks [rows].
   */
  sample(ptr: bigint, width: number, packed: Uint8Array, n: number, ids: Int32Array): void {
    this.p.gpu.download(ids, this.sampleOnDevice(ptr, width, packed, n, null, 0n));
  }

  /**
   * Launches the sampling of `n` f32 rows at `ptr` with their packed SampleRows; returns where the picks are.
   * `out` (else the sampling buffer) receives them, and `feed` too where not 0n (runSampleSteps). The
   * parameters' upload is ordered after every launch before it, so a chain's steps may each upload theirs.
   */
  sampleOnDevice(ptr: bigint, width: number, packed: Uint8Array, n: number, out: bigint | null, feed: bigint): bigint {
    this.sampleIn = this.grow(this.sampleIn, packed.byteLength, 'sampling parameters', false);
    this.sampleWork = this.grow(this.sampleWork, n * width * 12 + n * 4, 'sampling scratch', false);
    const inBase = this.sampleIn.ptr;
    const weights = this.sampleWork.ptr;
    const scores = weights + BigInt(n * width * 8);
    const picks = out ?? scores + BigInt(n * width * 4);
    this.p.gpu.upload(inBase, packed);
    const cluster = sampleClusterBlocks(width, n, this.p.gpu);
    this.p.gpu.launch('sample_f32', { x: n * cluster }, SAMPLE_THREADS, [picks, feed, ptr, width, inBase, inBase + BigInt(n * SAMPLE_PARAM_BYTES), scores, weights], 0, cluster);
    return picks;
  }

  /** Frees every buffer (the program is being disposed). */
  free(): void {
    for (const b of [...this.slots, ...this.batched.map((e) => e.buf), this.meta, this.scratchBuf, this.counterBuf, this.outBuf, this.argmaxBuf, this.argmaxCounters, this.chainBuf, this.sampleIn, this.sampleWork]) if (b) this.p.gpu.free(b.ptr);
  }

  /** Sizes (and poisons) the activation buffers and builds the step's context. */
  private prepare(meta: StepMetadata, metaBase: bigint, streamed?: StreamStep): { ctx: StepContext; kv: KvPointers | null } {
    this.reserveSlots(Math.max(meta.rows, meta.selected));
    this.batching = this.batched.length > 0 && batchedGemmMode() === 'on' && meta.rows >= BATCHED_MIN_ROWS && meta.rows <= BATCHED_MAX_ROWS && this.p.options.cublas && this.p.gpu.gemm !== null;
    if (this.batching) {
      const elem = dtypeBytes(this.p.act);
      for (const [k, e] of this.batched.entries()) this.batched[k].buf = this.grow(e.buf, e.b.members.length * meta.rows * e.b.width * elem, `batched linear outputs ${k}`);
    }
    if (this.p.options.poison) for (const s of this.slots) if (s) this.p.gpu.fill32(s.ptr, NAN_BITS, s.bytes / 4);
    return { ctx: this.context(meta, metaBase, streamed), kv: this.p.kv ? kvPointers(this.p.kv) : null };
  }

  /** Launches node i, or its fused group where the group runs, or nothing where another launch covers it. */
  private launchAt(ctx: StepContext, kv: KvPointers | null, i: number): void {
    const { plan } = this.p;
    if (plan.ropeCovers.has(i)) return; // rotated by its attention's launch (rope_kv, or attn_decode itself)
    if (plan.embeddingCovers.has(i)) return; // looked up by the launch of the add that sums it
    if (plan.reduceCovers.has(i)) return; // all-reduced by the launch of the add of its result
    if (plan.routerNormCovers.has(i)) return; // normalized by the launch of the router that reads it first
    const node = this.p.graph.nodes[i];
    if (ctx.meta.selectsAll && plan.gatherAlias.has(node.output)) return; // its readers read the input (context.value)
    const g = plan.groupOf.get(i);
    if (g && groupFuses(ctx, g)) {
      if (i === g.at) launchGroup(ctx, g);
      return;
    }
    const k = this.batching ? this.batchedAt.get(i) : undefined;
    if (k !== undefined) {
      const e = this.batched[k];
      if (i === e.first) launchBatched(ctx, e.b, ctx.meta.rows);
      return; // every member is in the batch
    }
    launchNode(ctx, node, kv);
  }

  private context(meta: StepMetadata, metaBase: bigint, streamed?: StreamStep): StepContext {
    const p = this.p;
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
        if (meta.selectsAll) id = p.plan.gatherAlias.get(id) ?? id;
        if (id === graph.inputs.tokenIds) return metaPtr(meta.at.tokenIds);
        if (id === graph.inputs.positions) return metaPtr(meta.at.positions);
        const out = this.batching ? this.batchedOut.get(id) : undefined;
        if (out) {
          const e = this.batched[out[0]];
          return e.buf!.ptr + BigInt(out[1] * meta.rows * e.b.width * dtypeBytes(p.act));
        }
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
      capturing: this.capturing,
      scratch: (bytes: number) => {
        this.scratchBuf = this.grow(this.scratchBuf, bytes, 'attention scratch');
        return this.scratchBuf.ptr;
      },
      counters: (n: number) => {
        const before = this.counterBuf;
        this.counterBuf = this.grow(this.counterBuf, n * 4, 'attention split counters');
        if (this.counterBuf !== before) p.gpu.fill32(this.counterBuf.ptr, 0, this.counterBuf.bytes / 4);
        return this.counterBuf.ptr;
      },
    };
  }

  /** Every slot buffer holds `rows` rows of its width; grown (never shrunk) as steps get larger. */
  private reserveSlots(rows: number): void {
    this.p.buffers.slotRowBytes.forEach((rowBytes, i) => {
      this.slots[i] = this.grow(this.slots[i], rows * rowBytes, `activation buffer ${i} (${rows} rows × ${rowBytes} bytes)`);
    });
  }

  /** `buf` if it holds `bytes`, else a new buffer 1.5× larger (stream-ordered free of the old one). */
  /**
   * `buf` with room for `bytes`, reallocated (1.5× at least) when it has not. `inGraphs` false: the buffer
   * is only used by launches after a step (argmax, sampling), never inside a captured graph, so a new
   * address leaves the graphs valid.
   */
  private grow(buf: Buffer | null, bytes: number, what: string, inGraphs = true): Buffer {
    if (buf && buf.bytes >= bytes) return buf;
    if (this.capturing) throw new BackendError(`${what} must grow during graph capture`);
    const size = Math.ceil(Math.max(bytes, buf ? buf.bytes * 1.5 : 0) / 256) * 256 || 256;
    if (buf) this.p.gpu.free(buf.ptr);
    if (inGraphs) this.gen++;
    return { ptr: this.p.gpu.alloc(size, what), bytes: size };
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
