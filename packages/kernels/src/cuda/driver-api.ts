// The CUDA driver API functions zinfer calls, as C prototypes koffi parses, and their TypeScript types.
// Handles (CUcontext, CUstream, CUmodule, CUfunction, CUevent, CUgraph, CUmemoryPool) are `void *`, which
// koffi 3 passes as BigInt; CUdeviceptr is a uint64 (BigInt or a safe Number coming back: normalise with
// BigInt()). Versioned names (`_v2`) are the symbols cuda.h maps the plain names to in CUDA 12/13.
import type { LibraryHandle } from 'koffi';

export type Ptr = bigint;
/** A pointer argument: a native address, or a typed array / Buffer koffi passes by address during the call. */
export type HostPtr = bigint | ArrayBufferView | null;
/** One-element out-parameter arrays koffi fills. */
type Out<T> = [T];

export interface DriverApi {
  cuInit(flags: number): number;
  cuDriverGetVersion(version: Out<number>): number;
  cuGetErrorName(status: number, name: Out<string | null>): number;
  cuGetErrorString(status: number, text: Out<string | null>): number;
  cuDeviceGetCount(count: Out<number>): number;
  cuDeviceGet(device: Out<number>, ordinal: number): number;
  cuDeviceGetName(name: Uint8Array, len: number, device: number): number;
  cuDeviceGetAttribute(value: Out<number>, attribute: number, device: number): number;
  cuDeviceTotalMem_v2(bytes: Out<number>, device: number): number;
  cuDevicePrimaryCtxRetain(ctx: Out<Ptr | null>, device: number): number;
  cuDevicePrimaryCtxRelease_v2(device: number): number;
  cuCtxSetCurrent(ctx: Ptr | null): number;
  cuCtxSynchronize(): number;
  cuMemGetInfo_v2(free: Out<number>, total: Out<number>): number;
  cuDeviceGetDefaultMemPool(pool: Out<Ptr | null>, device: number): number;
  cuMemPoolSetAttribute(pool: Ptr, attribute: number, value: BigUint64Array): number;
  cuMemAllocAsync(dptr: Out<number | bigint>, bytes: number, stream: Ptr | null): number;
  cuMemFreeAsync(dptr: Ptr, stream: Ptr | null): number;
  cuMemAllocHost_v2(pp: Out<Ptr | null>, bytes: number): number;
  cuMemFreeHost(p: Ptr): number;
  cuMemcpyHtoDAsync_v2(dst: Ptr, src: HostPtr, bytes: number, stream: Ptr | null): number;
  cuMemcpyDtoHAsync_v2(dst: HostPtr, src: Ptr, bytes: number, stream: Ptr | null): number;
  cuMemcpyDtoDAsync_v2(dst: Ptr, src: Ptr, bytes: number, stream: Ptr | null): number;
  cuMemsetD32Async(dst: Ptr, value: number, count: number, stream: Ptr | null): number;
  cuStreamCreate(stream: Out<Ptr | null>, flags: number): number;
  cuStreamDestroy_v2(stream: Ptr): number;
  cuStreamSynchronize(stream: Ptr | null): number;
  cuEventCreate(event: Out<Ptr | null>, flags: number): number;
  cuEventDestroy_v2(event: Ptr): number;
  cuEventRecord(event: Ptr, stream: Ptr | null): number;
  cuEventSynchronize(event: Ptr): number;
  cuEventElapsedTime: ((ms: Out<number>, start: Ptr, end: Ptr) => number);
  cuModuleLoadData(module: Out<Ptr | null>, image: Uint8Array): number;
  cuModuleUnload(module: Ptr): number;
  cuModuleGetFunction(fn: Out<Ptr | null>, module: Ptr, name: string): number;
  cuFuncGetAttribute(value: Out<number>, attribute: number, fn: Ptr): number;
  cuFuncSetAttribute(fn: Ptr, attribute: number, value: number): number;
  cuLaunchKernel(fn: Ptr, gx: number, gy: number, gz: number, bx: number, by: number, bz: number, sharedBytes: number, stream: Ptr | null, params: Ptr, extra: Ptr | null): number;
  cuStreamBeginCapture_v2(stream: Ptr, mode: number): number;
  cuStreamEndCapture(stream: Ptr, graph: Out<Ptr | null>): number;
  cuGraphInstantiateWithFlags(exec: Out<Ptr | null>, graph: Ptr, flags: bigint | number): number;
  cuGraphLaunch(exec: Ptr, stream: Ptr | null): number;
  cuGraphExecDestroy(exec: Ptr): number;
  cuGraphDestroy(graph: Ptr): number;
  /** CUDA 12.4+: size and offset of a kernel parameter, to check launches against the compiled kernel. */
  cuFuncGetParamInfo?: (fn: Ptr, index: number, offset: Out<number>, size: Out<number>) => number;
  /** CUDA 12+: a launch with attributes (programmatic dependent launch). */
  cuLaunchKernelEx?: (config: Ptr, fn: Ptr, params: Ptr, extra: Ptr | null) => number;
  /** Weight streaming (copy-engine.ts, host-memory.ts): optional so a driver without them still runs resident programs. */
  cuStreamWaitEvent?: (stream: Ptr, event: Ptr, flags: number) => number;
  cuEventQuery?: (event: Ptr) => number;
  /** Returns a pool's cached free memory to the device when a program is disposed (optional: fake drivers). */
  cuMemPoolTrimTo?: (pool: Ptr, minBytesToKeep: number) => number;
  cuMemHostAlloc?: (pp: Out<Ptr | null>, bytes: number, flags: number) => number;
  /** Peer-memory all-reduce (peer-memory.ts): optional so a driver without them falls back to NCCL. */
  cuDeviceCanAccessPeer?: (can: Out<number>, device: number, peer: number) => number;
  cuCtxEnablePeerAccess?: (peerCtx: Ptr, flags: number) => number;
  cuMemAlloc_v2?: (dptr: Out<number | bigint>, bytes: number) => number;
  /** A module's __device__ variable (the kernel trace's sink, kernel-trace.ts): optional, diagnostics only. */
  cuModuleGetGlobal_v2?: (dptr: Out<number | bigint>, bytes: Out<number>, module: Ptr, name: string) => number;
  cuMemFree_v2?: (dptr: Ptr) => number;
}

type Required_ = Exclude<keyof DriverApi, 'cuFuncGetParamInfo' | 'cuEventElapsedTime' | 'cuLaunchKernelEx' | 'cuStreamWaitEvent' | 'cuEventQuery' | 'cuMemHostAlloc' | 'cuMemPoolTrimTo' | 'cuModuleGetGlobal_v2' | PeerCall>;
type PeerCall = 'cuDeviceCanAccessPeer' | 'cuCtxEnablePeerAccess' | 'cuMemAlloc_v2' | 'cuMemFree_v2';

export const DRIVER_PROTOTYPES: Record<Required_, string> = {
  cuInit: 'int cuInit(unsigned int flags)',
  cuDriverGetVersion: 'int cuDriverGetVersion(_Out_ int *version)',
  cuGetErrorName: 'int cuGetErrorName(int status, _Out_ const char **name)',
  cuGetErrorString: 'int cuGetErrorString(int status, _Out_ const char **text)',
  cuDeviceGetCount: 'int cuDeviceGetCount(_Out_ int *count)',
  cuDeviceGet: 'int cuDeviceGet(_Out_ int *device, int ordinal)',
  cuDeviceGetName: 'int cuDeviceGetName(_Out_ uint8_t *name, int len, int device)',
  cuDeviceGetAttribute: 'int cuDeviceGetAttribute(_Out_ int *value, int attribute, int device)',
  cuDeviceTotalMem_v2: 'int cuDeviceTotalMem_v2(_Out_ size_t *bytes, int device)',
  cuDevicePrimaryCtxRetain: 'int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int device)',
  cuDevicePrimaryCtxRelease_v2: 'int cuDevicePrimaryCtxRelease_v2(int device)',
  cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
  cuCtxSynchronize: 'int cuCtxSynchronize()',
  cuMemGetInfo_v2: 'int cuMemGetInfo_v2(_Out_ size_t *free, _Out_ size_t *total)',
  cuDeviceGetDefaultMemPool: 'int cuDeviceGetDefaultMemPool(_Out_ void **pool, int device)',
  cuMemPoolSetAttribute: 'int cuMemPoolSetAttribute(void *pool, int attribute, void *value)',
  cuMemAllocAsync: 'int cuMemAllocAsync(_Out_ uint64_t *dptr, size_t bytes, void *stream)',
  cuMemFreeAsync: 'int cuMemFreeAsync(uint64_t dptr, void *stream)',
  cuMemAllocHost_v2: 'int cuMemAllocHost_v2(_Out_ void **pp, size_t bytes)',
  cuMemFreeHost: 'int cuMemFreeHost(void *p)',
  cuMemcpyHtoDAsync_v2: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)',
  cuMemcpyDtoHAsync_v2: 'int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, void *stream)',
  cuMemcpyDtoDAsync_v2: 'int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t bytes, void *stream)',
  cuMemsetD32Async: 'int cuMemsetD32Async(uint64_t dst, unsigned int value, size_t count, void *stream)',
  cuStreamCreate: 'int cuStreamCreate(_Out_ void **stream, unsigned int flags)',
  cuStreamDestroy_v2: 'int cuStreamDestroy_v2(void *stream)',
  cuStreamSynchronize: 'int cuStreamSynchronize(void *stream)',
  cuEventCreate: 'int cuEventCreate(_Out_ void **event, unsigned int flags)',
  cuEventDestroy_v2: 'int cuEventDestroy_v2(void *event)',
  cuEventRecord: 'int cuEventRecord(void *event, void *stream)',
  cuEventSynchronize: 'int cuEventSynchronize(void *event)',
  cuModuleLoadData: 'int cuModuleLoadData(_Out_ void **module, const void *image)',
  cuModuleUnload: 'int cuModuleUnload(void *module)',
  cuModuleGetFunction: 'int cuModuleGetFunction(_Out_ void **fn, void *module, const char *name)',
  cuFuncGetAttribute: 'int cuFuncGetAttribute(_Out_ int *value, int attribute, void *fn)',
  cuFuncSetAttribute: 'int cuFuncSetAttribute(void *fn, int attribute, int value)',
  cuLaunchKernel:
    'int cuLaunchKernel(void *fn, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx, unsigned int by, unsigned int bz, unsigned int sharedBytes, void *stream, void *params, void *extra)',
  cuStreamBeginCapture_v2: 'int cuStreamBeginCapture_v2(void *stream, int mode)',
  cuStreamEndCapture: 'int cuStreamEndCapture(void *stream, _Out_ void **graph)',
  cuGraphInstantiateWithFlags: 'int cuGraphInstantiateWithFlags(_Out_ void **exec, void *graph, unsigned long long flags)',
  cuGraphLaunch: 'int cuGraphLaunch(void *exec, void *stream)',
  cuGraphExecDestroy: 'int cuGraphExecDestroy(void *exec)',
  cuGraphDestroy: 'int cuGraphDestroy(void *graph)',
};

/** Symbols that older drivers lack; each has a fallback or is only a check. */
export const OPTIONAL_DRIVER_PROTOTYPES = {
  cuFuncGetParamInfo: 'int cuFuncGetParamInfo(void *fn, size_t index, _Out_ size_t *offset, _Out_ size_t *size)',
  cuEventElapsedTime_v2: 'int cuEventElapsedTime_v2(_Out_ float *ms, void *start, void *end)',
  cuEventElapsedTime: 'int cuEventElapsedTime(_Out_ float *ms, void *start, void *end)',
  cuLaunchKernelEx: 'int cuLaunchKernelEx(void *config, void *fn, void *params, void *extra)',
  cuStreamWaitEvent: 'int cuStreamWaitEvent(void *stream, void *event, unsigned int flags)',
  cuEventQuery: 'int cuEventQuery(void *event)',
  cuMemPoolTrimTo: 'int cuMemPoolTrimTo(void *pool, size_t minBytesToKeep)',
  cuMemHostAlloc: 'int cuMemHostAlloc(_Out_ void **pp, size_t bytes, unsigned int flags)',
  cuDeviceCanAccessPeer: 'int cuDeviceCanAccessPeer(_Out_ int *canAccessPeer, int dev, int peerDev)',
  cuCtxEnablePeerAccess: 'int cuCtxEnablePeerAccess(void *peerContext, unsigned int flags)',
  cuMemAlloc_v2: 'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
  cuModuleGetGlobal_v2: 'int cuModuleGetGlobal_v2(_Out_ uint64_t *dptr, _Out_ size_t *bytes, void *module, const char *name)',
  cuMemFree_v2: 'int cuMemFree_v2(uint64_t dptr)',
} as const;

// Enum values from cuda.h (CUDA 13.0).
export const CU = {
  DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: 16,
  DEVICE_ATTRIBUTE_L2_CACHE_SIZE: 38,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: 75,
  DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: 76,
  DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: 97,
  DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: 115,
  MEMPOOL_ATTR_RELEASE_THRESHOLD: 4,
  STREAM_NON_BLOCKING: 1,
  EVENT_DEFAULT: 0,
  FUNC_ATTRIBUTE_NUM_REGS: 4,
  FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: 3,
  STREAM_CAPTURE_MODE_THREAD_LOCAL: 1,
  STREAM_CAPTURE_MODE_RELAXED: 2,
  /** CUlaunchAttributeID of programmatic dependent launch. */
  LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: 6,
  /** CUlaunchAttributeID of a launch's thread-block cluster shape (sm_90). */
  LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION: 4,
  /** cuMemHostAlloc: pinned memory usable from every context. */
  MEMHOSTALLOC_PORTABLE: 1,
  /** cuEventQuery: work before the event has not finished yet. */
  ERROR_NOT_READY: 600,
  /** cuCtxEnablePeerAccess: this context already maps the peer's memory. */
  ERROR_PEER_ACCESS_ALREADY_ENABLED: 704,
} as const;

/** Binds every required driver function (a missing one is an error naming it) and the optional ones that exist. */
export function bindDriver(lib: LibraryHandle, path: string): DriverApi {
  const api: Partial<DriverApi> = {};
  for (const name of Object.keys(DRIVER_PROTOTYPES) as Required_[]) {
    try {
      api[name] = lib.func(DRIVER_PROTOTYPES[name]);
    } catch (e) {
      throw new Error(`${path} lacks ${name} (${(e as Error).message}); zinfer needs a CUDA 12 or newer driver`);
    }
  }
  const optional = (proto: string) => {
    try {
      return lib.func(proto);
    } catch {
      return undefined; // an older driver: the caller falls back
    }
  };
  const elapsed = optional(OPTIONAL_DRIVER_PROTOTYPES.cuEventElapsedTime_v2) ?? optional(OPTIONAL_DRIVER_PROTOTYPES.cuEventElapsedTime);
  if (!elapsed) throw new Error(`${path} lacks cuEventElapsedTime`);
  api.cuEventElapsedTime = elapsed;
  api.cuFuncGetParamInfo = optional(OPTIONAL_DRIVER_PROTOTYPES.cuFuncGetParamInfo);
  api.cuLaunchKernelEx = optional(OPTIONAL_DRIVER_PROTOTYPES.cuLaunchKernelEx);
  api.cuStreamWaitEvent = optional(OPTIONAL_DRIVER_PROTOTYPES.cuStreamWaitEvent);
  api.cuEventQuery = optional(OPTIONAL_DRIVER_PROTOTYPES.cuEventQuery);
  api.cuMemPoolTrimTo = optional(OPTIONAL_DRIVER_PROTOTYPES.cuMemPoolTrimTo);
  api.cuMemHostAlloc = optional(OPTIONAL_DRIVER_PROTOTYPES.cuMemHostAlloc);
  for (const name of ['cuDeviceCanAccessPeer', 'cuCtxEnablePeerAccess', 'cuMemAlloc_v2', 'cuMemFree_v2'] as const) api[name] = optional(OPTIONAL_DRIVER_PROTOTYPES[name]);
  api.cuModuleGetGlobal_v2 = optional(OPTIONAL_DRIVER_PROTOTYPES.cuModuleGetGlobal_v2);
  return api as DriverApi; // every required member was set above
}
