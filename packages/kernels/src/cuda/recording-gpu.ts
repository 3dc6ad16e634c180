// A Gpu without a device, for tests and dry runs on machines without one: allocations get fake addresses,
// and every launch is checked against the kernel's parameter list parsed from the cuda/ sources, with each
// pointer argument inside a live allocation. Outputs read back as zeros; the point is the launch logic.
// Graph capture records launches without running them; a replay checks them again (every pointer must
// still be live: a graph that outlives a buffer it captured would read freed memory on a GPU).
import { BackendError } from '@zinfer/core';
import type { CopyEngine } from './copy-engine.js';
import type { DeviceRange, Dim3, GemmArgs, Gpu, GraphExec, KernelArg, LaunchHook } from './gpu.js';
import { loadKernelSources, type KernelSignature } from './kernel-sources.js';
import { checkLaunch } from './launch.js';
import { RecordingCopies } from './recording-copies.js';

export interface RecordedLaunch {
  kernel: string;
  grid: Required<Dim3>;
  block: number;
  args: readonly KernelArg[];
  /** Blocks a thread-block cluster (1: none). */
  cluster: number;
  /** Set on launches that ran as part of a graph replay. */
  replay?: boolean;
}

/** Another library's work enqueued on the stream (an NCCL collective), with the ranges it touches. */
export interface RecordedExternal {
  what: string;
  buffers: readonly DeviceRange[];
  /** Set on entries that ran as part of a graph replay (the library was not called again). */
  replay?: boolean;
}

interface RecordedGraph extends GraphExec {
  launches: RecordedLaunch[];
  externals: RecordedExternal[];
  gemms: GemmArgs[];
  fills: { dst: bigint; count: number }[];
}

export class RecordingGpu implements Gpu {
  readonly name = 'recording gpu';
  readonly arch = 90;
  readonly multiprocessors: number = 132;
  readonly maxClusterBlocks = 8;
  readonly l2Bytes = 50 * 2 ** 20;
  readonly launches: RecordedLaunch[] = [];
  readonly gemms: GemmArgs[] = [];
  /** External work (NCCL collectives) in stream order, replays included. */
  readonly externals: RecordedExternal[] = [];
  /** The stream handle external work is enqueued on (a fake). */
  readonly stream = 0x5eedn;
  /** Graphs captured, replays run, graphs destroyed. */
  readonly graphStats = { captured: 0, replays: 0, destroyed: 0, live: 0 };
  /** A capture in progress: what it recorded so far. */
  private capture: RecordedGraph | null = null;
  /** Make the next captures fail at endCapture (as a driver does when a launch is not capturable). */
  failCaptures = false;
  private nextGraph = 1n;
  readonly gemm: ((g: GemmArgs) => void) | null;
  /** Live allocations: base → bytes. */
  readonly live = new Map<bigint, number>();
  allocated = 0;
  private next = 0x7f0000000000n;
  private readonly kernels: ReadonlyMap<string, KernelSignature>;
  /** Weight streaming's copy stream and events, logged in order with the launches. */
  readonly copies: RecordingCopies = new RecordingCopies(this);

  copyEngine(): CopyEngine {
    return this.copies;
  }

  /** With `keepUploads`: the bytes last uploaded to each address (tests read what a launch was given). */
  readonly uploads = new Map<bigint, Uint8Array>();
  private readonly keepUploads: boolean;

  constructor(opts: { cublas?: boolean; freeBytes?: number; keepUploads?: boolean } = {}) {
    this.keepUploads = opts.keepUploads ?? false;
    this.kernels = loadKernelSources().kernels;
    this.gemm = opts.cublas === false ? null : (g) => {
      for (const p of [g.y, g.x, g.w, ...(g.c === undefined ? [] : [g.c])]) this.checkPointer(p, 'gemm');
      if (g.batch) {
        // The last GEMM of a strided batch: its weights and output must lie in the same allocations.
        const bytes = (d: string) => (d === 'f32' ? 4 : 2);
        const last = BigInt(g.batch.count - 1);
        this.checkRange(g.w + last * BigInt(g.batch.strideW * bytes(g.dtype)), g.outF * g.inF * bytes(g.dtype), 'batched gemm weights');
        this.checkRange(g.y + last * BigInt(g.batch.strideY * bytes(g.yDtype)), g.rows * g.outF * bytes(g.yDtype), 'batched gemm output');
        this.checkRange(g.x + last * BigInt((g.batch.strideX ?? 0) * bytes(g.dtype)), g.rows * g.inF * bytes(g.dtype), 'batched gemm input');
      }
      if (!(g.yDtype === g.dtype || g.yDtype === 'f32')) throw new BackendError(`gemm writes ${g.dtype} or f32, asked ${g.yDtype}`);
      (this.capture?.gemms ?? this.gemms).push(g);
    };
    this.freeBytes = opts.freeBytes ?? 2 ** 36;
  }

  private readonly freeBytes: number;

  alloc(bytes: number, what: string): bigint {
    if (this.capture) throw new BackendError(`alloc of ${what} during graph capture (its address would change between replays)`);
    if (!(Number.isSafeInteger(bytes) && bytes > 0)) throw new BackendError(`alloc of ${bytes} bytes for ${what}`);
    const ptr = this.next;
    this.next += BigInt(Math.ceil(bytes / 256) * 256 + 256);
    this.live.set(ptr, bytes);
    this.allocated += bytes;
    return ptr;
  }

  free(ptr: bigint): void {
    if (this.capture) throw new BackendError('free during graph capture');
    const bytes = this.live.get(ptr);
    if (bytes === undefined) throw new BackendError(`free of 0x${ptr.toString(16)}, which is not a live allocation`);
    this.live.delete(ptr);
    this.allocated -= bytes;
  }

  upload(dst: bigint, src: ArrayBufferView): void {
    if (this.capture) throw new BackendError('upload during graph capture (host data is captured by address, not value)');
    this.checkRange(dst, src.byteLength, 'upload');
    if (this.keepUploads) this.uploads.set(dst, new Uint8Array(src.buffer, src.byteOffset, src.byteLength).slice());
  }

  download(dst: ArrayBufferView, src: bigint): void {
    if (this.capture) throw new BackendError('download during graph capture');
    this.checkRange(src, dst.byteLength, 'download');
    new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).fill(0);
  }

  fill32(dst: bigint, _value: number, count: number): void {
    this.checkRange(dst, count * 4, 'fill32');
    this.capture?.fills.push({ dst, count });
  }

  launch(kernel: string, grid: Dim3, block: number, args: readonly KernelArg[], sharedBytes = 0, cluster = 1): void {
    const sig = this.kernels.get(kernel);
    if (!sig) throw new BackendError(`no CUDA kernel named ${kernel} in zinfer's kernel sources`);
    checkLaunch(sig, grid, block, args, sharedBytes, cluster, this.maxClusterBlocks);
    sig.params.forEach((p, i) => {
      if (p.kind === 'ptr' && args[i] !== 0n) this.checkPointer(args[i] as bigint, `${kernel} parameter ${p.name}`);
    });
    const hook = this.capture ? null : this.hook;
    hook?.before(kernel, grid, block, args);
    (this.capture?.launches ?? this.launches).push({ kernel, grid: { x: grid.x, y: grid.y ?? 1, z: grid.z ?? 1 }, block, args: [...args], cluster });
    hook?.after(kernel);
  }

  private hook: LaunchHook | null = null;

  setLaunchHook(hook: LaunchHook | null): void {
    this.hook = hook;
  }

  external(what: string, buffers: readonly DeviceRange[], enqueue: (stream: bigint) => void): void {
    for (const b of buffers) this.checkRange(b.ptr, b.bytes, what);
    enqueue(this.stream);
    (this.capture?.externals ?? this.externals).push({ what, buffers: [...buffers] });
  }

  beginCapture(): void {
    if (this.capture) throw new BackendError('beginCapture while capturing');
    this.capture = { handle: this.nextGraph++, launches: [], externals: [], gemms: [], fills: [] };
  }

  endCapture(): GraphExec {
    const g = this.capture;
    if (!g) throw new BackendError('endCapture without beginCapture');
    this.capture = null;
    if (this.failCaptures) throw new BackendError('CUDA driver call cuStreamEndCapture failed with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (recording gpu)');
    this.graphs.set(g.handle, g);
    this.graphStats.captured++;
    this.graphStats.live++;
    return g;
  }

  launchGraph(graph: GraphExec): void {
    const g = this.graphs.get(graph.handle);
    if (!g) throw new BackendError(`launch of graph ${graph.handle}, which is not live`);
    for (const f of g.fills) this.checkRange(f.dst, f.count * 4, 'fill32 in a graph');
    for (const l of g.launches) {
      this.kernels.get(l.kernel)!.params.forEach((p, i) => {
        if (p.kind === 'ptr' && l.args[i] !== 0n) this.checkPointer(l.args[i] as bigint, `${l.kernel} parameter ${p.name} (graph replay)`);
      });
      this.launches.push({ ...l, replay: true });
    }
    for (const m of g.gemms) this.gemm!(m);
    for (const x of g.externals) {
      for (const b of x.buffers) this.checkRange(b.ptr, b.bytes, `${x.what} (graph replay)`);
      this.externals.push({ ...x, replay: true });
    }
    this.graphStats.replays++;
  }

  destroyGraph(graph: GraphExec): void {
    if (!this.graphs.delete(graph.handle)) throw new BackendError(`destroy of graph ${graph.handle}, which is not live`);
    this.graphStats.destroyed++;
    this.graphStats.live--;
  }

  /** Live graphs by handle. */
  private readonly graphs = new Map<bigint, RecordedGraph>();

  synchronize(): void {}
  enter(): void {}
  loadKernels(): void {}
  dispose(): void {}

  memInfo(): { free: number; total: number } {
    return { free: this.freeBytes - this.allocated, total: this.freeBytes };
  }

  /** Bytes from `ptr` to the end of its allocation; throws when ptr is in none. */
  extent(ptr: bigint): number {
    for (const [base, bytes] of this.live) if (ptr >= base && ptr < base + BigInt(bytes)) return Number(base + BigInt(bytes) - ptr);
    throw new BackendError(`pointer 0x${ptr.toString(16)} is in no live allocation`);
  }

  private checkPointer(ptr: bigint, what: string): void {
    try {
      this.extent(ptr);
    } catch {
      throw new BackendError(`${what}: pointer 0x${ptr.toString(16)} is in no live allocation`);
    }
  }

  private checkRange(ptr: bigint, bytes: number, what: string): void {
    const room = this.extent(ptr);
    if (bytes > room) throw new BackendError(`${what} of ${bytes} bytes at 0x${ptr.toString(16)} overruns its allocation (${room} bytes left)`);
  }
}
