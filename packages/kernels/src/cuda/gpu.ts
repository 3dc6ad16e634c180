// What a compiled program needs from the GPU: stream-ordered memory, copies, kernel launches by name, a
// GEMM, and CUDA graph capture/replay, all on one stream. CudaStream implements it on the driver; tests
// implement it with a recorder that checks every launch against the kernels' parsed signatures, so the
// program's launch logic runs on machines without a GPU.
import type { FloatDType } from '@zinfer/core';
import type { CopyEngine } from './copy-engine.js';
import type { PeerMemory } from './peer-memory.js';

export interface Dim3 {
  x: number;
  y?: number;
  z?: number;
}

/** A kernel argument: device pointers as bigint, int32 and f32 values as number (the signature decides). */
export type KernelArg = bigint | number;

export interface GemmArgs {
  /** y [rows, outF] = x [rows, inF] · wᵀ, w [outF, inF]; all row-major, f32 accumulation (no TF32). */
  y: bigint;
  x: bigint;
  w: bigint;
  /** Element type of x and w (one type: cuBLAS multiplies like types; f16/bf16 run on tensor cores). */
  dtype: FloatDType;
  /** Element type of y: `dtype`, or f32 (the graph's output). */
  yDtype: FloatDType;
  rows: number;
  inF: number;
  outF: number;
  /** Added to the product (y = x · wᵀ + c): [rows, outF] in yDtype, not overlapping y (the buffer plan keeps them apart). */
  c?: bigint;
  /**
   * A strided batch of `count` GEMMs: GEMM i reads w + i·strideW and x + i·strideX (0, the default: one x
   * for all) and writes y + i·strideY (strides in elements); no c.
   */
  batch?: { count: number; strideW: number; strideY: number; strideX?: number };
}

/** Sees every kernel launch of a Gpu while set (kernel profiling: kernel-profile.ts); not called while capturing. */
export interface LaunchHook {
  /** Just before the launch is enqueued. */
  before(kernel: string, grid: Dim3, block: number, args: readonly KernelArg[]): void;
  /** Just after it is enqueued. */
  after(kernel: string): void;
}

/** Bytes of device memory from ptr. */
export interface DeviceRange {
  ptr: bigint;
  bytes: number;
}

/** A captured and instantiated CUDA graph (an opaque handle). */
export interface GraphExec {
  readonly handle: bigint;
}

export interface Gpu {
  /** e.g. 'NVIDIA H100 80GB HBM3'. */
  readonly name: string;
  /** Compute capability as a number: 90 for sm_90. */
  readonly arch: number;
  /** Streaming multiprocessors, for sizing grids. */
  readonly multiprocessors: number;
  /** Bytes of L2 cache, for sizing prefetches (l2-prefetch.ts). */
  readonly l2Bytes: number;
  /** Device bytes for `bytes`, stream-ordered; `what` names the allocation in an out-of-memory error. */
  alloc(bytes: number, what: string): bigint;
  free(ptr: bigint): void;
  /** Host → device on the stream; the source may be reused as soon as this returns. */
  upload(dst: bigint, src: ArrayBufferView): void;
  /** Device → host; waits for the stream, so `dst` holds the data when this returns. */
  download(dst: ArrayBufferView, src: bigint): void;
  /** Sets `count` 32-bit words at dst to `value` (e.g. 0x7fc00000, a NaN, to poison buffers in tests). */
  fill32(dst: bigint, value: number, count: number): void;
  /**
   * The most blocks a thread-block cluster may have in a launch: 8 (the portable limit) on sm_90 and later
   * with cuLaunchKernelEx, else 1 (every block its own cluster).
   */
  readonly maxClusterBlocks: number;
  /**
   * Launches an `extern "C"` kernel of the cuda/ sources; args are checked against its parameter list.
   * `cluster` > 1 groups consecutive blocks along x into clusters of that many (grid.x a multiple of it,
   * at most maxClusterBlocks); the kernel reads the size at run time (cuda/cluster.cuh).
   */
  launch(kernel: string, grid: Dim3, block: number, args: readonly KernelArg[], sharedBytes?: number, cluster?: number): void;
  /** cuBLAS GEMM. Null when this GPU has no GEMM library (or it is turned off). */
  readonly gemm: ((args: GemmArgs) => void) | null;
  /** Starts recording the stream's launches and memsets into a graph instead of running them. */
  beginCapture(): void;
  /** Stops recording and instantiates the graph; after a failed capture, throws (capture is over either way). */
  endCapture(): GraphExec;
  /**
   * Enqueues another library's work on this stream (NCCL collectives): `enqueue` gets the stream handle.
   * `buffers` are the device ranges the work reads or writes (checked by the recording gpu). Captured into
   * a graph like a launch while capturing.
   */
  external(what: string, buffers: readonly DeviceRange[], enqueue: (stream: bigint) => void): void;
  /** Runs a captured graph on the stream. */
  launchGraph(graph: GraphExec): void;
  destroyGraph(graph: GraphExec): void;
  /** Waits for all work on the stream and turns a failed kernel into an error. */
  synchronize(): void;
  /** Makes the GPU's context current on the calling thread: call on entering compile, run and dispose. */
  enter(): void;
  /** Compiles (or reads from the cache) and loads every kernel now rather than at the first launch. */
  loadKernels(): void;
  /** Free and total device memory in bytes. */
  memInfo(): { free: number; total: number };
  /** Releases the stream (the program has freed its memory first). */
  dispose(): void;
  /** Sets (or with null clears) the hook that sees each launch; absent where a Gpu cannot be observed. */
  setLaunchHook?(hook: LaunchHook | null): void;
  /** Weight streaming: a copy stream beside this one, with events (created on first call, disposed with the Gpu). */
  copyEngine?(): CopyEngine;
  /** Memory other GPUs of this process may map (the peer-memory all-reduce); absent: NCCL only. */
  peerMemory?(): PeerMemory;
}
