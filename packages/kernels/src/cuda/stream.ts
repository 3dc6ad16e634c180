// The Gpu of one program: a non-blocking stream on a CudaDevice, with stream-ordered allocations from the
// device's default pool, copies, checked kernel launches, cuBLAS and CUDA graph capture. A failed kernel
// shows up at the next synchronize; the error then lists the launches since the last one, which names the
// likely culprit (ZINFER_CUDA_SYNC=1 synchronizes after every launch to pin it down exactly).
//
// With `pdl`, kernels launch with programmatic stream serialization (sm_90): a kernel may start while the
// one before it drains, and waits (griddepcontrol.wait, in every zinfer kernel) only before it touches
// what that kernel wrote; a GEMV so streams its weights during the previous kernel's tail.
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';
import { CudaCopyEngine } from './copy-engine.js';
import type { CudaDevice } from './device.js';
import { CU, type Ptr } from './driver-api.js';
import type { DeviceRange, Dim3, GemmArgs, Gpu, GraphExec, KernelArg, LaunchHook } from './gpu.js';
import { fmtBytes } from './format.js';
import { StreamGemm } from './stream-gemm.js';
import { defaultCacheDir } from './kernel-cache.js';
import { checkLaunch } from './launch.js';
import { CudaPeerMemory } from './peer-memory.js';

const OUT_OF_MEMORY = 2; // CUDA_ERROR_OUT_OF_MEMORY

/** Bytes of a CUlaunchConfig (CUDA 12/13) and of one CUlaunchAttribute. */
const LAUNCH_CONFIG_BYTES = 56;
const LAUNCH_ATTRIBUTE_BYTES = 72;

export interface CudaStreamOptions {
  cublas?: boolean;
  syncEachLaunch?: boolean;
  cacheDir?: string | null;
  /** Programmatic dependent launch for every kernel (needs sm_90 and cuLaunchKernelEx; else ignored). */
  pdl?: boolean;
}

export class CudaStream implements Gpu {
  readonly name: string;
  readonly arch: number;
  readonly multiprocessors: number;
  readonly l2Bytes: number;
  readonly stream: Ptr;
  readonly gemm: ((g: GemmArgs) => void) | null;
  /** Whether launches use programmatic dependent launch. */
  readonly pdl: boolean;
  readonly maxClusterBlocks: number;
  private staging: { ptr: Ptr; bytes: number } | null = null;
  private pending: string[] = [];
  private readonly syncEachLaunch: boolean;
  private readonly cacheDir: string | null;
  private launchConfig: { ptr: Ptr; view: DataView } | null = null;
  /** The config of cluster launches: PDL as the stream has it, and the cluster's shape. */
  private clusterConfig: { ptr: Ptr; view: DataView } | null = null;
  private capturing = false;
  private copies: CudaCopyEngine | null = null;
  private hook: LaunchHook | null = null;
  private gemms: StreamGemm | null = null;

  constructor(readonly device: CudaDevice, opts: CudaStreamOptions = {}) {
    this.name = device.props.name;
    this.arch = device.props.arch;
    this.multiprocessors = device.props.multiprocessors;
    this.l2Bytes = device.props.l2Bytes;
    device.enter();
    const s: [Ptr | null] = [null];
    this.driver.check('cuStreamCreate', this.driver.api.cuStreamCreate(s, CU.STREAM_NON_BLOCKING));
    this.stream = s[0]!;
    this.cacheDir = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir;
    this.syncEachLaunch = opts.syncEachLaunch ?? process.env.ZINFER_CUDA_SYNC === '1';
    const gemms = (this.gemms = opts.cublas === false ? null : new StreamGemm(device, this));
    this.gemm = !gemms ? null : (g) => {
      // A launch hook sees a GEMM as 'cublas_gemm' with (rows, outF, inF, element bytes) as its arguments
      // (a batch as one GEMM of its members' outF together).
      const hook = this.capturing ? null : this.hook;
      hook?.before('cublas_gemm', { x: 1 }, 0, [g.rows, g.outF * (g.batch?.count ?? 1), g.inF, g.dtype === 'f32' ? 4 : 2]);
      gemms.run(g, this.capturing);
      hook?.after('cublas_gemm');
    };
    const launchEx = this.arch >= 90 && this.driver.api.cuLaunchKernelEx !== undefined;
    this.pdl = (opts.pdl ?? false) && launchEx;
    this.maxClusterBlocks = launchEx ? 8 : 1;
    if (this.pdl) this.launchConfig = this.makeLaunchConfig(false);
  }

  private get driver() {
    return this.device.driver;
  }

  alloc(bytes: number, what: string): bigint {
    const out: [number | bigint] = [0];
    const status = this.driver.api.cuMemAllocAsync(out, Math.max(bytes, 4), this.stream);
    if (status === OUT_OF_MEMORY) {
      const { free, total } = this.device.memInfo();
      throw new BackendError(`out of GPU memory allocating ${what}: asked ${fmtBytes(bytes)}, ${fmtBytes(free)} free of ${fmtBytes(total)} on ${this.name}`, {
        expected: `${bytes} bytes`,
        found: `${free} bytes free`,
      });
    }
    this.driver.check('cuMemAllocAsync', status, `${bytes} bytes for ${what}`);
    return BigInt(out[0]);
  }

  free(ptr: bigint): void {
    this.driver.check('cuMemFreeAsync', this.driver.api.cuMemFreeAsync(ptr, this.stream));
  }

  upload(dst: bigint, src: ArrayBufferView): void {
    // Pageable source: the driver stages it before returning, so the caller may reuse it at once.
    this.driver.check('cuMemcpyHtoDAsync_v2', this.driver.api.cuMemcpyHtoDAsync_v2(dst, src, src.byteLength, this.stream), `${src.byteLength} bytes`);
  }

  download(dst: ArrayBufferView, src: bigint): void {
    const n = dst.byteLength;
    const staging = this.stagingBuffer(n);
    this.driver.check('cuMemcpyDtoHAsync_v2', this.driver.api.cuMemcpyDtoHAsync_v2(staging.ptr, src, n, this.stream), `${n} bytes`);
    this.synchronize();
    new Uint8Array(dst.buffer, dst.byteOffset, n).set(new Uint8Array(koffi.view(staging.ptr, n)));
  }

  fill32(dst: bigint, value: number, count: number): void {
    this.driver.check('cuMemsetD32Async', this.driver.api.cuMemsetD32Async(dst, value >>> 0, count, this.stream));
  }

  launch(kernel: string, grid: Dim3, block: number, args: readonly KernelArg[], sharedBytes = 0, cluster = 1): void {
    const k = this.device.kernels(this.cacheDir).get(kernel);
    if (!k) throw new BackendError(`no CUDA kernel named ${kernel} in zinfer's kernel sources`);
    checkLaunch(k.sig, grid, block, args, sharedBytes, cluster, this.maxClusterBlocks);
    const params = this.device.arena.pack(k.sig, args);
    const hook = this.capturing ? null : this.hook;
    hook?.before(kernel, grid, block, args);
    let status: number;
    let call = 'cuLaunchKernel';
    const config = cluster > 1 ? (this.clusterConfig ??= this.makeLaunchConfig(true)) : this.launchConfig;
    if (config) {
      call = 'cuLaunchKernelEx';
      const v = config.view;
      [grid.x, grid.y ?? 1, grid.z ?? 1, block, 1, 1, sharedBytes].forEach((d, i) => v.setUint32(4 * i, d, true));
      if (cluster > 1) v.setUint32(LAUNCH_CONFIG_BYTES + LAUNCH_ATTRIBUTE_BYTES + 8, cluster, true);
      status = this.driver.api.cuLaunchKernelEx!(config.ptr, k.fn, params, null);
    } else {
      status = this.driver.api.cuLaunchKernel(k.fn, grid.x, grid.y ?? 1, grid.z ?? 1, block, 1, 1, sharedBytes, this.stream, params, null);
    }
    this.driver.check(call, status, `${kernel} grid (${grid.x}, ${grid.y ?? 1}, ${grid.z ?? 1}) block ${block}${cluster > 1 ? ` cluster ${cluster}` : ''}`);
    hook?.after(kernel);
    this.pending.push(kernel);
    if (this.pending.length > 64) this.pending.splice(0, this.pending.length - 64);
    if (this.syncEachLaunch && !this.capturing) this.synchronize();
  }

  setLaunchHook(hook: LaunchHook | null): void {
    this.hook = hook;
  }

  external(what: string, _buffers: readonly DeviceRange[], enqueue: (stream: bigint) => void): void {
    enqueue(this.stream);
    this.pending.push(what);
    if (this.syncEachLaunch && !this.capturing) this.synchronize();
  }

  beginCapture(): void {
    this.driver.check('cuStreamBeginCapture_v2', this.driver.api.cuStreamBeginCapture_v2(this.stream, CU.STREAM_CAPTURE_MODE_RELAXED));
    this.capturing = true;
  }

  endCapture(): GraphExec {
    this.capturing = false;
    const g: [Ptr | null] = [null];
    this.driver.check('cuStreamEndCapture', this.driver.api.cuStreamEndCapture(this.stream, g), 'a launch during capture failed or was not capturable');
    if (g[0] === null) throw new BackendError('cuStreamEndCapture returned no graph');
    const exec: [Ptr | null] = [null];
    try {
      this.driver.check('cuGraphInstantiateWithFlags', this.driver.api.cuGraphInstantiateWithFlags(exec, g[0], 0));
    } finally {
      this.driver.api.cuGraphDestroy(g[0]);
    }
    if (exec[0] === null) throw new BackendError('cuGraphInstantiateWithFlags returned no graph');
    return { handle: exec[0] };
  }

  launchGraph(graph: GraphExec): void {
    this.driver.check('cuGraphLaunch', this.driver.api.cuGraphLaunch(graph.handle, this.stream));
    this.pending.push('(graph)');
    if (this.syncEachLaunch) this.synchronize();
  }

  destroyGraph(graph: GraphExec): void {
    this.driver.check('cuGraphExecDestroy', this.driver.api.cuGraphExecDestroy(graph.handle));
  }

  synchronize(): void {
    const status = this.driver.api.cuStreamSynchronize(this.stream);
    if (status !== 0) {
      const recent = this.pending.slice(-8).join(', ') || 'none';
      throw this.driver.error('cuStreamSynchronize', status, `a kernel or copy on the stream failed; last launches: ${recent}`);
    }
    this.pending = [];
  }

  memInfo(): { free: number; total: number } {
    return this.device.memInfo();
  }

  enter(): void {
    this.device.enter();
  }

  loadKernels(): void {
    this.device.kernels(this.cacheDir);
  }

  copyEngine(): CudaCopyEngine {
    return (this.copies ??= new CudaCopyEngine(this.driver, this.stream));
  }

  peerMemory(): CudaPeerMemory {
    return new CudaPeerMemory(this.device);
  }

  dispose(): void {
    this.gemms?.dispose();
    this.synchronize();
    this.copies?.dispose();
    this.copies = null;
    if (this.staging) this.driver.api.cuMemFreeHost(this.staging.ptr);
    this.staging = null;
    for (const c of [this.launchConfig, this.clusterConfig]) if (c) koffi.free(c.ptr);
    this.launchConfig = this.clusterConfig = null;
    this.driver.check('cuStreamDestroy_v2', this.driver.api.cuStreamDestroy_v2(this.stream));
    this.device.trimPool();
  }

  /**
   * A CUlaunchConfig for this stream whose first attribute is programmatic stream serialization (on as the
   * stream has it), and with `cluster` a second, the cluster's shape (x set per launch, y = z = 1); launch()
   * rewrites only the grid, block, shared-memory and cluster-x fields. Layout (cuda.h, 64-bit): 7 × u32 dims
   * and sharedMemBytes, pad, CUstream at 32, attrs pointer at 40, numAttrs at 48; an attribute: u32 id,
   * pad, a 64-byte value union (the flag as its first int; the cluster as 3 × u32).
   */
  private makeLaunchConfig(cluster: boolean): { ptr: Ptr; view: DataView } {
    const attrs = cluster ? 2 : 1;
    const bytes = LAUNCH_CONFIG_BYTES + attrs * LAUNCH_ATTRIBUTE_BYTES;
    const ptr: bigint = koffi.alloc('uint8_t', bytes);
    const view = new DataView(koffi.view(ptr, bytes));
    for (let i = 0; i < bytes; i++) view.setUint8(i, 0);
    view.setBigUint64(32, BigInt(this.stream), true);
    view.setBigUint64(40, ptr + BigInt(LAUNCH_CONFIG_BYTES), true);
    view.setUint32(48, attrs, true);
    view.setUint32(LAUNCH_CONFIG_BYTES, CU.LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, true);
    view.setInt32(LAUNCH_CONFIG_BYTES + 8, this.pdl ? 1 : 0, true);
    if (cluster) {
      const at = LAUNCH_CONFIG_BYTES + LAUNCH_ATTRIBUTE_BYTES;
      view.setUint32(at, CU.LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION, true);
      [1, 1, 1].forEach((d, i) => view.setUint32(at + 8 + 4 * i, d, true));
    }
    return { ptr, view };
  }

  /** Pinned host memory for downloads, grown to the largest seen. */
  private stagingBuffer(bytes: number): { ptr: Ptr; bytes: number } {
    if (this.staging && this.staging.bytes >= bytes) return this.staging;
    if (this.staging) {
      this.synchronize();
      this.driver.api.cuMemFreeHost(this.staging.ptr);
      this.staging = null;
    }
    const size = Math.max(bytes, 1 << 20);
    const p: [Ptr | null] = [null];
    this.driver.check('cuMemAllocHost_v2', this.driver.api.cuMemAllocHost_v2(p, size), `${size} bytes of pinned staging`);
    this.staging = { ptr: p[0]!, bytes: size };
    return this.staging;
  }
}
