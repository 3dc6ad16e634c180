// The plugin contracts, in one versioned file. Plugins are factories returning plain named objects;
// the engine config composes them (no registries, nothing registers on import). A change that breaks a
// plugin bumps CONTRACT_VERSION; plugins state the version they implement.
import type { FloatDType } from './dtype.js';
import type { Graph } from './graph.js';
import type { OpNode, WeightName } from './ops.js';
import type { HostTensor } from './tensor.js';

export const CONTRACT_VERSION = 1;

// ---------------------------------------------------------------------------------------------------
// Kernel backends

export interface DeviceInfo {
  /** e.g. 'cpu', 'cuda:0'. */
  device: string;
  /** Human-readable model name of the device. */
  description: string;
  /** Bytes the backend may use for weights and KV cache. */
  memoryBytes: number;
}

/** Where the weights of a graph come from; read lazily, one tensor at a time. */
export interface WeightSource {
  names(): readonly WeightName[];
  /** Loads (or returns the already loaded) tensor; the backend copies or keeps it. */
  get(name: WeightName): HostTensor;
  /**
   * Only `length` indices from `start` along `axis` of a weight (a tensor-parallel shard), reading no more
   * of the checkpoint than it must. Optional: without it, callers slice get()'s tensor.
   */
  getSlice?(name: WeightName, axis: number, start: number, length: number): HostTensor;
  /** Optional: the dtype get() would return, from headers alone (no tensor data is read). */
  dtypeOf?(name: WeightName): FloatDType;
}

/** One sequence's slice of a step. */
export interface StepSequence {
  /** First row of this sequence in the step's token rows. */
  queryStart: number;
  /** Rows this sequence contributes to the step (prompt chunk length, or 1 when decoding). */
  queryLength: number;
  /** Tokens of context after this step: cached tokens + queryLength. Position of row i = contextLength - queryLength + i. */
  contextLength: number;
  /** Physical KV-cache block of each logical block of the sequence. */
  blockTable: Int32Array;
}

/**
 * Everything a program needs to run one step over a batch. The scheduler keeps the redundant fields
 * consistent, and backends may rely on it: positions[queryStart + i] = contextLength − queryLength + i, and
 * slots[r] is that position's slot through the sequence's blockTable.
 */
export interface StepBatch {
  tokenIds: Int32Array; // [rows]
  positions: Int32Array; // [rows]
  /** KV-cache slot (block * blockSize + offset) where each row's k and v are written. */
  slots: Int32Array; // [rows]
  sequences: readonly StepSequence[];
  /** Rows whose output (logits) the step returns, in order. */
  selectedRows: Int32Array;
}

/** How one selected row picks its token in Program.runSample: its sequence's sampling params and draw. */
export interface SampleRow {
  /** 0: greedy (argmax after the penalty); the other processors are then ignored. */
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  /** The sequence's uniform draw in [0, 1) for this token (Sampler.draw(); 0 when greedy). */
  uniform: number;
  /** The distinct token ids the repetition penalty applies to (empty when it is 1). */
  penalized: Int32Array;
}

export interface KvCacheSpec {
  numBlocks: number;
  blockSize: number;
  /** The cache's element type (default 'auto'); 'fp8' only on backends that list it in kvCacheDtypes. */
  dtype?: KvCacheDtype;
}

/**
 * KV-cache element type: 'auto', the backend's own choice (its activation dtype: exact); 'fp8', e4m3 at one
 * byte an element (opt-in, lossy: each K and V element rounds to 3 mantissa bits; the cuda backend).
 */
export type KvCacheDtype = 'auto' | 'fp8';

export interface CompileOptions {
  kvCache: KvCacheSpec;
  /** The rank's tensor-parallel group, when the graph has allReduce/allGather nodes. */
  communicator?: Communicator;
  /** The rank's pipeline group (one rank per stage), when the graph has send/recv nodes. */
  pipeline?: Communicator;
  /**
   * Weights that stay off the device (ZeRO-Inference): the program must not load the stream's weights at
   * compile time; it keeps `stream.prefetch + 1` slots for them and acquires each group while running.
   * Only for backends with `streaming: true`.
   */
  stream?: WeightStream;
}

/** What the engine tells a program about a step beyond its batch. */
export interface RunOptions {
  /**
   * Steps the engine keeps in flight, this one included (its step lanes, for a program with
   * concurrentSteps > 1): a pipeline then sends a decode step through as one micro-batch, since the
   * other lanes' steps already fill its stages.
   */
  concurrent?: number;
}

/** A graph compiled for one device, with its weights and KV cache resident. */
export interface Program {
  /**
   * Runs one step; returns the graph's output value row-major: [selectedRows.length, width] when the output
   * comes after gatherRows (as a model's logits do), else [tokenIds.length, width].
   */
  run(batch: StepBatch, options?: RunOptions): Promise<Float32Array>;
  /**
   * Optional: runs the step and returns only the argmax token id of each selected row (lowest index on
   * ties, as the greedy sampler picks). The engine uses it when every row of a step is greedy decoding,
   * so a device backend copies ids instead of [rows, vocab] logits to the host.
   */
  runArgmax?(batch: StepBatch, options?: RunOptions): Promise<Int32Array>;
  /**
   * Optional: runs the step and returns the token each selected row samples, picked on the device as
   * core's TokenFilter.pick would pick it from run()'s logits with the row's params and uniform draw (the
   * kept set of repetition penalty → top-k → top-p → min-p, walked in ascending id order). The engine uses
   * it when no row of a step needs its logits, so only ids cross to the host. `rows[i]` is selected row i's.
   */
  runSample?(batch: StepBatch, rows: readonly SampleRow[], options?: RunOptions): Promise<Int32Array>;
  /**
   * Optional: `steps` greedy decode steps in one call. `batch` is the first, a decode step (one row a
   * sequence, in order, every row selected); in step j + 1 each row is one position further (its slot
   * through its sequence's block table, which the caller makes cover every step) and its token is the row's
   * argmax of step j. Returns the [steps, rows] ids, step after step, as `steps` runArgmax calls would. A
   * device backend feeds the ids on the device, so the device does not wait for the host between steps; the
   * engine uses it for runs of greedy decode (EngineLimits.decodeSteps). chainArgmaxSteps does it on the host.
   */
  runArgmaxSteps?(batch: StepBatch, steps: number, options?: RunOptions): Promise<Int32Array>;
  /**
   * Optional: `rows.length` sampled decode steps in one call, as runArgmaxSteps chains greedy ones: step j
   * picks each selected row's token as runSample would with `rows[j]` (that step's params and draw), and
   * feeds it to step j + 1. Returns the [steps, rows] ids. The engine chains only rows whose repetition
   * penalty is 1 (a penalized set would change with each token). chainSampleSteps does it on the host.
   */
  runSampleSteps?(batch: StepBatch, rows: readonly (readonly SampleRow[])[], options?: RunOptions): Promise<Int32Array>;
  /**
   * Optional: runs the step for what it does besides its output (the KV cache written, the collectives a
   * rank takes part in) and resolves once the step is complete, without producing the output. The ranks of
   * a parallel plan whose output nobody reads use it, so a device backend does not copy [rows, vocab]
   * logits to the host for nothing at every step. Absent: run(), its output dropped.
   */
  runWithoutOutput?(batch: StepBatch, options?: RunOptions): Promise<void>;
  /**
   * Optional, for Mixture-of-Experts graphs: tokens routed to each expert since compile, one array per
   * moeRouter node in graph order (= MoE layer order), each of length `experts` (a token counts once per
   * expert of its top-k). Routing statistics for /metrics and load-aware expert placement.
   */
  expertLoad?(): Promise<Float64Array[]>;
  /**
   * Optional: where the weights live, for a program whose ranks placed offloaded weights themselves
   * (data parallelism, LaunchArgs.offload); the program closes it on dispose.
   */
  readonly offload?: OffloadPlacement;
  /**
   * Optional: how many run() calls on disjoint sequences the program overlaps (a pipeline of that many
   * stages works on one call's batch per stage). An engine stepping on its own keeps that many steps in
   * flight, so a sequence's next token enters the pipeline as soon as its own step comes out, without
   * waiting for the other sequences. Absent or 1: one step at a time.
   */
  readonly concurrentSteps?: number;
  /**
   * Optional: moves whole KV-cache blocks between the program's cache and host memory, for a program
   * compiled with a small device cache whose caller keeps the rest of the blocks on the host (KV-cache
   * offload: @zinfer/parallel's pipelineParallel({ kvOffload })). Absent: the cache stays where it is.
   */
  readonly kvBlocks?: KvBlockTransfer;
  /** Frees device memory; the program cannot run afterwards. */
  dispose(): Promise<void>;
}

/**
 * A program's KV-cache blocks copied to and from host memory. A host store holds whole blocks, each
 * `blockBytes` long at `block × blockBytes`: per layer of the program, that block's K rows then its V rows
 * (blockSize × kvHeads·headDim elements of the cache's dtype: f32, f16/bf16, or one byte in fp8).
 *
 * Ordering. The backend keeps these (a device backend with events between its compute and copy streams):
 * a save reads each block after every step enqueued before the call; a load writes each block once every
 * step enqueued before the call is done with it; transfers of one program happen in call order (a save of
 * a device block, then a load into it, is safe). The caller keeps these: a step may read a loaded block,
 * or write a device block whose contents were saved, only after the transfer's promise resolved; and no
 * block that a running step uses is moved. Steps do not wait for transfers, so copies of blocks that the
 * next step needs overlap the running one (double buffering). Each promise resolves once its copies
 * completed (the host store then holds a save's bytes) and rejects when a copy failed.
 */
export interface KvBlockTransfer {
  /** Bytes of one block in a host store: K and V of every layer of the program, in the cache dtype. */
  readonly blockBytes: number;
  /** A host store for `blocks` blocks, in the memory this backend copies from fastest (page-locked on CUDA). */
  allocHost(blocks: number): ArrayBuffer;
  /** Frees a store of allocHost now (no view of it may be used afterwards); else it goes with the garbage. */
  freeHost(store: ArrayBuffer): void;
  /** Device block deviceBlocks[i] → host block hostBlocks[i] of `store`. */
  save(deviceBlocks: Int32Array, store: ArrayBuffer, hostBlocks: Int32Array): Promise<void>;
  /** Host block hostBlocks[i] of `store` → device block deviceBlocks[i]. */
  load(hostBlocks: Int32Array, store: ArrayBuffer, deviceBlocks: Int32Array): Promise<void>;
}

/** How to make a backend again in another thread or process: `(await import(module))[exportName](options)`. */
export interface BackendFactory {
  module: string;
  exportName: string;
  options?: unknown;
}

export interface KernelBackend {
  readonly name: string;
  readonly contractVersion: number;
  /** Set by backends that parallel plans may start in worker threads (one backend per rank). */
  readonly factory?: BackendFactory;
  /** What device this backend would run on here, or null when it cannot run on this machine. */
  probe(): Promise<DeviceInfo | null>;
  /** Whether the backend implements this node (op + attrs); the engine refuses graphs it cannot run. */
  supports(node: OpNode): boolean;
  /**
   * Bytes of KV cache per block for this layout, so the engine can size the cache from a budget. `weights`
   * (optional) lets a backend whose cache dtype follows the stored weights size it exactly (dtypeOf).
   */
  kvBytesPerBlock(graph: Graph, blockSize: number, weights?: WeightSource, dtype?: KvCacheDtype): number;
  /** KV-cache element types compile() accepts in options.kvCache.dtype besides 'auto' (absent: 'auto' only). */
  readonly kvCacheDtypes?: readonly KvCacheDtype[];
  /**
   * Set by backends whose parallel ranks each need a device of their own and talk through a device
   * collective library ('nccl': CUDA). The launcher then runs rank r on device `(options.device ?? 0) + r`
   * (merging `{ device }` into backend.factory's options, which must be an object or absent) and compiles
   * with communicators whose `device` collectives use that library on the rank's stream.
   */
  readonly deviceCollectives?: 'nccl';
  /** Whether compile() accepts `options.stream` (weights streamed in group by group while a step runs). */
  readonly streaming?: boolean;
  /**
   * Optional: host memory the backend copies from fastest (page-locked through the CUDA driver on GPU
   * machines). Offload tiers keep their host copies and disk read buffers there; without it, plain memory.
   */
  allocHost?(bytes: number): ArrayBuffer;
  compile(graph: Graph, weights: WeightSource, options: CompileOptions): Promise<Program>;
}

// ---------------------------------------------------------------------------------------------------
// Parallelism (implemented by @zinfer/parallel)

export interface DeviceRef {
  rank: number;
  backend: string;
}

/** A shard of one weight: which slice of which axis this rank holds. */
export interface WeightShard {
  weight: WeightName;
  axis: number;
  start: number;
  length: number;
}

export interface ParallelPlan {
  /**
   * Per rank: the graph it runs (with collectives inserted) and the weight shards it holds. Ranks are
   * stage-major: rank = stage × tensorSize + tensorRank, with tensorSize = ranks.length / stages.
   */
  ranks: readonly { graph: Graph; shards: readonly WeightShard[] }[];
  /** Pipeline stages (1 without pipeline parallelism). */
  stages: number;
}

/** What a strategy needs to start its ranks. */
export interface LaunchArgs {
  plan: ParallelPlan;
  /** The backend every rank runs (worker-thread ranks re-create it from backend.factory). */
  backend: KernelBackend;
  /** The model directory (worker-thread ranks read their own shards from it) and the weight dtype. */
  model: { dir: string; dtype?: FloatDType };
  /** The model's weights on this thread (for ranks that run here). */
  weights: WeightSource;
  kvCache: KvCacheSpec;
  /**
   * Offload for strategies with `offload: true` (data parallelism): the engine does not place the weights
   * itself; each rank places them with its FetchShard, so the ranks fetch every streamed group together.
   */
  offload?: WeightOffload;
}

export interface ParallelStrategy {
  readonly name: string;
  /** Number of ranks (devices) the strategy runs on. */
  readonly ranks: number;
  /** Set by strategies whose launch() places offloaded weights per rank (LaunchArgs.offload). */
  readonly offload?: boolean;
  /** Pure: shards weights and inserts collectives; never touches devices. */
  plan(graph: Graph, devices: readonly DeviceRef[]): ParallelPlan;
  /** Compiles each rank's graph on its device and returns one Program that steps them together. */
  launch(args: LaunchArgs): Promise<Program>;
}

/** Collectives between ranks (shared memory on CPU, NCCL on CUDA). Buffers are the backend's handles. */
export interface Communicator {
  readonly rank: number;
  readonly size: number;
  allReduce(buf: Float32Array, op?: 'sum' | 'max'): Promise<void>;
  allGather(send: Float32Array, recv: Float32Array): Promise<void>;
  allToAll(send: Float32Array, recv: Float32Array, sendCounts: readonly number[], recvCounts: readonly number[]): Promise<void>;
  send(buf: Float32Array, peer: number): Promise<void>;
  recv(buf: Float32Array, peer: number): Promise<void>;
  close(): Promise<void>;
  /** Collectives on device memory (NCCL for CUDA ranks); absent on host-only communicators. */
  readonly device?: DeviceCollectives;
}

/**
 * Collectives on device memory, enqueued on the caller's stream: they order with its kernels, nothing
 * waits on the host, and a CUDA graph may capture them. Pointers and the stream are the device library's
 * handles (CUdeviceptr, CUstream as bigint). Each call pairs with the same call on the group's other ranks,
 * in the same order; `count` is elements of `dtype`.
 */
export interface DeviceCollectives {
  /** The library behind them, e.g. 'nccl'. */
  readonly library: string;
  /** recv[i] = Σ over ranks of send[i] for i < count; send === recv reduces in place. */
  allReduce(send: bigint, recv: bigint, count: number, dtype: FloatDType, stream: bigint): void;
  /** recv [size, count] = every rank's send [count], in rank order. */
  allGather(send: bigint, recv: bigint, count: number, dtype: FloatDType, stream: bigint): void;
  send(buf: bigint, count: number, dtype: FloatDType, peer: number, stream: bigint): void;
  recv(buf: bigint, count: number, dtype: FloatDType, peer: number, stream: bigint): void;
  /**
   * Optional (expert-parallel dispatch): send holds one block per rank in rank order (sendCounts[r]
   * elements for rank r, this rank's own block included), recv receives recvCounts[r] elements from each
   * rank r, in rank order; zero counts move nothing. One grouped exchange (NCCL: grouped send/recv).
   */
  allToAll?(send: bigint, recv: bigint, sendCounts: readonly number[], recvCounts: readonly number[], dtype: FloatDType, stream: bigint): void;
  /**
   * Optional: set when the group's ranks are threads of one process (one address space), so a backend may
   * share device memory between them (a peer-memory all-reduce for small messages over NVLink).
   */
  readonly peers?: PeerGroup;
}

/** The ranks of a device group that share one process, and a host exchange of addresses between them. */
export interface PeerGroup {
  /** This rank's index in the group. */
  readonly rank: number;
  /** The device ordinal of every rank, in rank order. */
  readonly devices: readonly number[];
  /**
   * Every rank's `values` (unsigned 64-bit, e.g. device pointers), in rank order. A blocking collective:
   * every rank calls it with as many values, in the same order as the group's other collectives.
   */
  exchange(values: readonly bigint[]): Promise<bigint[][]>;
}

// ---------------------------------------------------------------------------------------------------
// Mixture of Experts (implemented by @zinfer/moe)

export interface ExpertPlacement {
  readonly name: string;
  /** Rank that holds each expert of `layer`: Int32Array of length numExperts. `load` is tokens seen per expert. */
  place(args: { layer: number; numExperts: number; ranks: number; load?: Float64Array }): Int32Array;
}

// ---------------------------------------------------------------------------------------------------
// Offload (implemented by @zinfer/offload)

/** One streamed weight, as WeightSource.get() would give it (stored dtype and shape). */
export interface StreamedWeight {
  name: WeightName;
  tensor: HostTensor;
}

/** What the fetch and compute timelines record (milliseconds on performance.now()'s clock). */
export interface StreamEvent {
  group: number;
  kind: 'fetch' | 'compute';
  start: number;
  end: number;
}

/**
 * The weights of a graph that live in an offload tier, in groups (one decoder layer each) that a step
 * uses in order. A program running a step acquires group g before its first node that reads one of g's
 * weights, copies the tensors into one of its `prefetch + 1` device slots, and releases g. It may acquire
 * groups g+1 … g+prefetch while g computes (that is the overlap); acquires of one step come in group order.
 */
export interface WeightStream {
  /** Weight names per group; a weight is in at most one group; groups are in the order a step uses them. */
  readonly groups: readonly (readonly WeightName[])[];
  /** Groups a program fetches ahead of the one computing (0: each fetched when needed). */
  readonly prefetch: number;
  /** The group's tensors in `groups[g]` order, valid until release(g). */
  acquire(group: number): Promise<readonly StreamedWeight[]>;
  /** The program has copied group g; its host buffers may be reused. */
  release(group: number): void;
  /** Programs report when a group's compute ran, for the timeline (optional for them to call). */
  recordCompute(group: number, start: number, end: number): void;
  /**
   * Set on a cooperative fetch's stream (FetchShard). A device backend may take the rank's share instead of
   * acquire(): copy it into its slot at rank × share bytes and all-gather the slot in place over
   * `communicator.device`; acquire() still serves backends that gather on the host.
   */
  readonly shard?: StreamShard;
}

/** One group's image as a cooperative fetch lays it out: a device slot can hold it byte for byte. */
export interface ShardImage {
  /** Each weight's place in the image (vectors f32, tensors 256-byte aligned), in `groups[g]` order. */
  entries: readonly { name: WeightName; dtype: FloatDType; shape: readonly number[]; offset: number; bytes: number }[];
  /** Image bytes: a multiple of size × 4096, so every share is whole f32 elements. */
  bytes: number;
}

export interface StreamShard {
  readonly rank: number;
  readonly size: number;
  readonly communicator: Communicator;
  image(group: number): ShardImage;
  /** The rank's bytes [rank·S/size, (rank+1)·S/size) of group g's image; same order rules as acquire, then release(g). */
  acquireShare(group: number): Promise<Uint8Array>;
}

/** Places a graph's weights over the device and the offload tiers (implemented by @zinfer/offload). */
export interface WeightOffload {
  readonly name: string;
  readonly contractVersion: number;
  /** How to make this offload again in a worker thread (data-parallel worker ranks place on their own). */
  readonly factory?: BackendFactory;
  /**
   * Decides, at layer granularity, which weights stay resident on the device (up to its byte budget) and
   * which stream from the host or disk tier; fills the tiers. `weights` then serves the resident ones.
   */
  place(args: { graph: Graph; weights: WeightSource; backend: KernelBackend; shard?: FetchShard }): Promise<OffloadPlacement>;
}

/**
 * One data-parallel rank's part in a cooperative fetch (ZeRO-Inference on N devices): the rank's tier keeps
 * only bytes [rank·S/size, (rank+1)·S/size) of each streamed group's image of S bytes, and an all-gather
 * over `communicator` (every rank, same groups, same order) assembles the whole group for each rank.
 */
export interface FetchShard {
  rank: number;
  size: number;
  communicator: Communicator;
}

export interface OffloadPlacement {
  /** Resident weights (give to compile as its WeightSource). */
  readonly resident: WeightSource;
  /** The streamed weights, or null when everything fits on the device. */
  readonly stream: WeightStream | null;
  /** One line per tier (bytes and layers held), printed at start-up. */
  readonly summary: readonly string[];
  /**
   * Optional: bytes the placement keeps on the compute device (resident weights and streaming slots), so
   * the engine can give the rest to the KV cache (limits.kvCacheBytes 'auto').
   */
  readonly deviceBytes?: number;
  /** The fetch and compute timelines recorded so far (for benches); cleared by the caller at will. */
  timeline(): StreamEvent[];
  close(): Promise<void>;
}

export interface OffloadTier {
  readonly name: string;
  readonly level: 'device' | 'host' | 'disk';
  readonly capacityBytes: number;
  /** Stores a weight in this tier. */
  put(name: WeightName, tensor: HostTensor): Promise<void>;
  /** Reads a weight back (into host memory) for streaming to the device. */
  fetch(name: WeightName): Promise<HostTensor>;
  release(name: WeightName): Promise<void>;
}
