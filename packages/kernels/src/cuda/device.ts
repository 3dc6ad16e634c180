// One CUDA device: its primary context, its properties, and zinfer's kernels compiled for it (NVRTC, cached
// on disk) and loaded as modules. Opened once per device ordinal and shared by every program on it.
import { BackendError } from '@zinfer/core';
import { Cublas } from './cublas.js';
import { CU, type Ptr } from './driver-api.js';
import { CudaDriver } from './driver.js';
import { compileUnits, defaultCacheDir } from './kernel-cache.js';
import { KernelTrace, traceBuild } from './kernel-trace.js';
import { loadKernelSources, type KernelSignature } from './kernel-sources.js';
import { ParamArena } from './launch.js';
import { findIncludeDir } from './libraries.js';
import { Nvrtc } from './nvrtc.js';

export interface DeviceProps {
  ordinal: number;
  name: string;
  /** Compute capability × 10 + minor: 90 for an H100. */
  arch: number;
  multiprocessors: number;
  l2Bytes: number;
  totalBytes: number;
}

export interface LoadedKernel {
  fn: Ptr;
  sig: KernelSignature;
}

export class CudaDevice {
  readonly arena = new ParamArena();
  private kernelTable: Map<string, LoadedKernel> | null = null;
  private cublas: Cublas | null = null;
  private kernelError: Error | null = null;
  private cublasError: Error | null = null;
  /** Loaded modules; they live as long as the process, like the device. */
  private modules: Ptr[] = [];
  /** The graph timeline's buffer, in trace builds (ZINFER_CUDA_TRACE=1) once the kernels are loaded. */
  trace: KernelTrace | null = null;
  /** What the last kernel load did: files compiled now, their cache files (sm_<arch>-<key>.cubin), NVRTC version, seconds taken. */
  kernelLoad: { compiled: string[]; cacheFiles: string[]; nvrtc: string; seconds: number } | null = null;

  private constructor(readonly driver: CudaDriver, readonly props: DeviceProps, readonly ctx: Ptr, private readonly pool: Ptr | null) {}

  /**
   * Gives the pool's cached free memory back to the device. The pool keeps freed memory (release
   * threshold: everything) so steps do not return it at every synchronize; a disposed program's weights
   * and KV cache must not stay reserved, or the next engine in this process (another tp size, a replica)
   * finds the GPU full.
   */
  trimPool(): void {
    const trim = this.driver.api.cuMemPoolTrimTo;
    if (!this.pool || !trim) return;
    this.enter();
    this.driver.check('cuMemPoolTrimTo', trim(this.pool, 0));
  }

  private static open_ = new Map<number, CudaDevice>();

  /** The device if this process has opened it already, else null (opens nothing). */
  static opened(ordinal = 0): CudaDevice | null {
    return CudaDevice.open_.get(ordinal) ?? null;
  }

  static open(ordinal = 0): CudaDevice {
    const known = CudaDevice.open_.get(ordinal);
    if (known) return known;
    const driver = CudaDriver.load();
    const { api } = driver;
    const count: [number] = [0];
    driver.check('cuDeviceGetCount', api.cuDeviceGetCount(count));
    if (!(Number.isInteger(ordinal) && ordinal >= 0 && ordinal < count[0])) {
      throw new BackendError(`CUDA device ${ordinal} does not exist`, { field: 'device', expected: `0..${count[0] - 1}`, found: String(ordinal) });
    }
    const dev: [number] = [0];
    driver.check('cuDeviceGet', api.cuDeviceGet(dev, ordinal));
    const attr = (a: number) => {
      const v: [number] = [0];
      driver.check('cuDeviceGetAttribute', api.cuDeviceGetAttribute(v, a, dev[0]), `attribute ${a}`);
      return v[0];
    };
    const nameBuf = new Uint8Array(256);
    driver.check('cuDeviceGetName', api.cuDeviceGetName(nameBuf, nameBuf.length, dev[0]));
    const total: [number] = [0];
    driver.check('cuDeviceTotalMem_v2', api.cuDeviceTotalMem_v2(total, dev[0]));
    const props: DeviceProps = {
      ordinal,
      name: new TextDecoder().decode(nameBuf.subarray(0, nameBuf.indexOf(0))),
      arch: attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) * 10 + attr(CU.DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
      multiprocessors: attr(CU.DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
      l2Bytes: attr(CU.DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
      totalBytes: Number(total[0]),
    };
    if (!attr(CU.DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED)) throw new BackendError(`CUDA device ${ordinal} (${props.name}) does not support stream-ordered memory pools`);
    const ctx: [Ptr | null] = [null];
    driver.check('cuDevicePrimaryCtxRetain', api.cuDevicePrimaryCtxRetain(ctx, dev[0]));
    if (ctx[0] === null) throw new BackendError('cuDevicePrimaryCtxRetain returned no context');
    driver.check('cuCtxSetCurrent', api.cuCtxSetCurrent(ctx[0]));
    // Keep freed memory in the pool rather than returning it to the OS at every synchronize.
    const pool: [Ptr | null] = [null];
    driver.check('cuDeviceGetDefaultMemPool', api.cuDeviceGetDefaultMemPool(pool, dev[0]));
    if (pool[0] !== null) driver.check('cuMemPoolSetAttribute', api.cuMemPoolSetAttribute(pool[0], CU.MEMPOOL_ATTR_RELEASE_THRESHOLD, BigUint64Array.of(2n ** 64n - 1n)));
    const device = new CudaDevice(driver, props, ctx[0], pool[0]);
    CudaDevice.open_.set(ordinal, device);
    return device;
  }

  /** Makes this device's context current on the calling thread. */
  enter(): void {
    this.driver.check('cuCtxSetCurrent', this.driver.api.cuCtxSetCurrent(this.ctx));
  }

  memInfo(): { free: number; total: number } {
    this.enter();
    const [free, total]: [[number], [number]] = [[0], [0]];
    this.driver.check('cuMemGetInfo_v2', this.driver.api.cuMemGetInfo_v2(free, total));
    return { free: Number(free[0]), total: Number(total[0]) };
  }

  /** zinfer's kernels, compiled for this device's architecture on first use (CUBINs cached in cacheDir). */
  kernels(cacheDir: string | null = defaultCacheDir()): Map<string, LoadedKernel> {
    if (this.kernelTable) return this.kernelTable;
    if (this.kernelError) throw this.kernelError; // a failed build fails fast after the first report
    try {
      this.kernelTable = this.loadKernels(cacheDir);
    } catch (e) {
      this.kernelError = e as Error;
      throw e;
    }
    return this.kernelTable;
  }

  private loadKernels(cacheDir: string | null): Map<string, LoadedKernel> {
    this.enter();
    const t0 = performance.now();
    const nvrtc = Nvrtc.open();
    const archs = nvrtc.supportedArchs();
    if (!archs.includes(this.props.arch)) {
      throw new BackendError(`NVRTC ${nvrtc.version} (${nvrtc.path}) cannot build for sm_${this.props.arch} (${this.props.name})`, { expected: `one of sm_${archs.join(', sm_')}`, found: `sm_${this.props.arch}` });
    }
    const sources = loadKernelSources();
    const { cubins, compiled, cacheFiles } = compileUnits(nvrtc, sources, this.props.arch, findIncludeDir(nvrtc.path), cacheDir);
    const { api } = this.driver;
    const table = new Map<string, LoadedKernel>();
    for (const [file, cubin] of cubins) {
      const mod: [Ptr | null] = [null];
      this.driver.check('cuModuleLoadData', api.cuModuleLoadData(mod, cubin), file);
      this.modules.push(mod[0]!);
      for (const sig of sources.kernels.values()) {
        if (sig.file !== file) continue;
        const fn: [Ptr | null] = [null];
        this.driver.check('cuModuleGetFunction', api.cuModuleGetFunction(fn, mod[0]!, sig.name), `${sig.name} in ${file}`);
        this.checkParams(fn[0]!, sig);
        table.set(sig.name, { fn: fn[0]!, sig });
      }
    }
    if (traceBuild()) this.trace = KernelTrace.attach(this.driver, this.modules);
    this.kernelLoad = { compiled, cacheFiles, nvrtc: nvrtc.version, seconds: (performance.now() - t0) / 1000 };
    return table;
  }

  /** cuBLAS on this device, loaded and its handle created on first use. */
  gemmLibrary(): Cublas {
    if (this.cublas) return this.cublas;
    if (this.cublasError) throw this.cublasError;
    this.enter();
    try {
      this.cublas = Cublas.open();
    } catch (e) {
      this.cublasError = e as Error;
      throw e;
    }
    return this.cublas;
  }

  /**
   * Where the driver can say (CUDA 12.4+), the compiled parameter sizes must match the parsed signature.
   * A driver that cannot answer for parameter 0 skips the check rather than failing the load.
   */
  private checkParams(fn: Ptr, sig: KernelSignature): void {
    const info = this.driver.api.cuFuncGetParamInfo;
    if (!info) return;
    const [offset, size]: [[number], [number]] = [[0], [0]];
    if (sig.params.length && info(fn, 0, offset, size) !== 0) return;
    sig.params.forEach((p, i) => {
      this.driver.check('cuFuncGetParamInfo', info(fn, i, offset, size), `${sig.name} parameter ${i}`);
      const want = p.kind === 'ptr' ? 8 : 4;
      if (Number(size[0]) !== want) throw new BackendError(`kernel ${sig.name} parameter ${p.name} is ${size[0]} bytes in the CUBIN; the parsed signature says ${p.kind}`);
    });
    if (info(fn, sig.params.length, offset, size) === 0) throw new BackendError(`kernel ${sig.name} has more parameters in the CUBIN than the ${sig.params.length} parsed from ${sig.file}`);
  }
}
