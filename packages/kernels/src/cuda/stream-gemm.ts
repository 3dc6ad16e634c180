// The cuBLASLt GEMMs of one stream, and their workspace. The workspace lets the heuristic pick split-K
// algorithms; it is allocated at the first call outside a capture (a captured allocation would belong to
// the graph), and a shape first seen while capturing plans without one.
//
// Tried and dropped (session 8, H200): timing the heuristic's first 8 candidates and split-K variants of its
// first two (2–16 splits) once per shape of at most 256 rows and keeping the fastest. Timed from DRAM (L2
// overwritten before each call) the first pick won or tied for every 64-row shape of the 7B model; the
// graphed 64-row step measured 10.575 ms with first picks and 10.531 with timed picks (noise).
import type { CudaDevice } from './device.js';
import type { Ptr } from './driver-api.js';
import type { GemmArgs } from './gpu.js';

/** Workspace a stream gives cuBLASLt (split-K algorithms keep partial sums there). */
export const GEMM_WORKSPACE_BYTES = 32 << 20;

/** What a StreamGemm needs of its stream (a CudaStream). */
export interface GemmStream {
  readonly stream: Ptr;
  alloc(bytes: number, what: string): bigint;
  free(ptr: bigint): void;
}

export class StreamGemm {
  private workspace: { ptr: bigint; bytes: number } | null = null;

  constructor(
    private readonly device: CudaDevice,
    private readonly s: GemmStream,
  ) {}

  /** Enqueues y = x · wᵀ (+ c); `capturing`: the stream is being captured into a graph. */
  run(g: GemmArgs, capturing: boolean): void {
    const lib = this.device.gemmLibrary();
    if (!this.workspace && !capturing) this.workspace = { ptr: this.s.alloc(GEMM_WORKSPACE_BYTES, 'cuBLASLt workspace'), bytes: GEMM_WORKSPACE_BYTES };
    const ws = this.workspace ?? { ptr: 0n, bytes: 0 };
    lib.run(this.s.stream, lib.plan(g, ws.bytes), g, ws.ptr, ws.bytes);
  }

  /** Frees the workspace (stream-ordered). */
  dispose(): void {
    if (this.workspace) this.s.free(this.workspace.ptr);
    this.workspace = null;
  }
}
