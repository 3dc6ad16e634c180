// The few CUDA driver calls NCCL ranks need outside any backend: count the devices, make a device's
// primary context current on this thread (NCCL's runtime calls then run on that device, the same context
// the CUDA backend uses), and a stream with device memory to stage host buffers through for the host-side
// Communicator methods. libcuda is found by the loader (it is in its cache wherever a driver is installed)
// or in ZINFER_CUDA_LIB_DIR; its toolkit stub, which has no .so.1 name, is never picked.
import { join } from 'node:path';
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';

type Out<T> = [T];

interface DriverApi {
  cuInit(flags: number): number;
  cuGetErrorName(status: number, name: Out<string | null>): number;
  cuDeviceGetCount(count: Out<number>): number;
  cuDeviceGet(device: Out<number>, ordinal: number): number;
  cuDevicePrimaryCtxRetain(ctx: Out<bigint | null>, device: number): number;
  cuCtxSetCurrent(ctx: bigint): number;
  cuStreamCreate(stream: Out<bigint | null>, flags: number): number;
  cuStreamDestroy_v2(stream: bigint): number;
  cuStreamSynchronize(stream: bigint): number;
  cuMemAlloc_v2(ptr: Out<number | bigint>, bytes: number): number;
  cuMemFree_v2(ptr: bigint): number;
  cuMemcpyHtoDAsync_v2(dst: bigint, src: ArrayBufferView, bytes: number, stream: bigint): number;
  cuMemcpyDtoHAsync_v2(dst: ArrayBufferView, src: bigint, bytes: number, stream: bigint): number;
}

const PROTOTYPES: Record<keyof DriverApi, string> = {
  cuInit: 'int cuInit(unsigned int flags)',
  cuGetErrorName: 'int cuGetErrorName(int status, _Out_ const char **name)',
  cuDeviceGetCount: 'int cuDeviceGetCount(_Out_ int *count)',
  cuDeviceGet: 'int cuDeviceGet(_Out_ int *device, int ordinal)',
  cuDevicePrimaryCtxRetain: 'int cuDevicePrimaryCtxRetain(_Out_ void **ctx, int device)',
  cuCtxSetCurrent: 'int cuCtxSetCurrent(void *ctx)',
  cuStreamCreate: 'int cuStreamCreate(_Out_ void **stream, unsigned int flags)',
  cuStreamDestroy_v2: 'int cuStreamDestroy_v2(void *stream)',
  cuStreamSynchronize: 'int cuStreamSynchronize(void *stream)',
  cuMemAlloc_v2: 'int cuMemAlloc_v2(_Out_ uint64_t *dptr, size_t bytes)',
  cuMemFree_v2: 'int cuMemFree_v2(uint64_t dptr)',
  cuMemcpyHtoDAsync_v2: 'int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t bytes, void *stream)',
  cuMemcpyDtoHAsync_v2: 'int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t bytes, void *stream)',
};

let driver: DriverApi | null = null;

function load(): DriverApi {
  if (driver) return driver;
  const dir = process.env.ZINFER_CUDA_LIB_DIR?.split(':').find(Boolean);
  const path = dir ? join(dir, 'libcuda.so.1') : 'libcuda.so.1';
  let api: Partial<DriverApi>;
  try {
    const lib = koffi.load(path);
    api = Object.fromEntries(Object.entries(PROTOTYPES).map(([name, proto]) => [name, lib.func(proto)]));
  } catch (e) {
    throw new BackendError(`cannot load the CUDA driver (${path}) for NCCL ranks: ${(e as Error).message}`, { file: path, expected: 'an NVIDIA driver; ZINFER_CUDA_LIB_DIR names its folder' });
  }
  const d = api as DriverApi; // every member was bound above
  check(d, 'cuInit', d.cuInit(0));
  driver = d;
  return d;
}

function check(api: DriverApi, call: string, status: number, context?: string): void {
  if (status === 0) return;
  const name: Out<string | null> = [null];
  api.cuGetErrorName(status, name);
  throw new BackendError(`CUDA driver call ${call} failed with ${name[0] ?? `CUresult ${status}`}${context ? ` (${context})` : ''}`, { found: `status ${status}` });
}

/** CUDA devices visible to this process. */
export function cudaDeviceCount(): number {
  const api = load();
  const n: Out<number> = [0];
  check(api, 'cuDeviceGetCount', api.cuDeviceGetCount(n));
  return n[0];
}

/** Makes device `ordinal`'s primary context current on the calling thread. */
export function bindDevice(ordinal: number): void {
  const api = load();
  const dev: Out<number> = [0];
  check(api, 'cuDeviceGet', api.cuDeviceGet(dev, ordinal), `device ${ordinal}`);
  const ctx: Out<bigint | null> = [null];
  check(api, 'cuDevicePrimaryCtxRetain', api.cuDevicePrimaryCtxRetain(ctx, dev[0]));
  check(api, 'cuCtxSetCurrent', api.cuCtxSetCurrent(ctx[0]!));
}

/** A stream and a growing device buffer on the current device, for host data on its way to NCCL. */
export class StagingBuffers {
  private readonly api = load();
  readonly stream: bigint;
  private buffers: { ptr: bigint; bytes: number }[] = [];

  constructor() {
    const s: Out<bigint | null> = [null];
    check(this.api, 'cuStreamCreate', this.api.cuStreamCreate(s, 1)); // CU_STREAM_NON_BLOCKING
    this.stream = s[0]!;
  }

  /** Device buffer `i` of at least `bytes` (its contents are lost when it grows). */
  buffer(i: number, bytes: number): bigint {
    const b = this.buffers[i];
    if (b && b.bytes >= bytes) return b.ptr;
    if (b) check(this.api, 'cuMemFree_v2', this.api.cuMemFree_v2(b.ptr));
    const out: Out<number | bigint> = [0];
    check(this.api, 'cuMemAlloc_v2', this.api.cuMemAlloc_v2(out, Math.max(bytes, 256)), `${bytes} bytes of NCCL staging`);
    this.buffers[i] = { ptr: BigInt(out[0]), bytes: Math.max(bytes, 256) };
    return this.buffers[i].ptr;
  }

  upload(dst: bigint, src: ArrayBufferView): void {
    if (src.byteLength) check(this.api, 'cuMemcpyHtoDAsync_v2', this.api.cuMemcpyHtoDAsync_v2(dst, src, src.byteLength, this.stream));
  }

  /** Copies back after the stream's earlier work (the collective) is done. */
  download(dst: ArrayBufferView, src: bigint): void {
    if (dst.byteLength) check(this.api, 'cuMemcpyDtoHAsync_v2', this.api.cuMemcpyDtoHAsync_v2(dst, src, dst.byteLength, this.stream));
    this.synchronize();
  }

  synchronize(): void {
    check(this.api, 'cuStreamSynchronize', this.api.cuStreamSynchronize(this.stream), 'an NCCL collective or copy failed, or its communicator was aborted');
  }

  dispose(): void {
    for (const b of this.buffers) this.api.cuMemFree_v2(b.ptr);
    this.buffers = [];
    this.api.cuStreamDestroy_v2(this.stream);
  }
}
