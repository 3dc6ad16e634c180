// libcuda loaded once per process, with every call's status turned into a BackendError that names the call
// and the status (cuGetErrorName / cuGetErrorString), e.g. "cuMemAllocAsync failed: CUDA_ERROR_OUT_OF_MEMORY".
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';
import { bindDriver, type DriverApi } from './driver-api.js';
import { findLibrary, type DiscoveryOptions } from './libraries.js';

export class CudaDriver {
  private constructor(readonly api: DriverApi, readonly path: string, readonly version: number) {}

  private static loaded: CudaDriver | null = null;

  /** Loads and initialises the driver (cuInit) once; later calls return the same instance. */
  static load(options?: DiscoveryOptions): CudaDriver {
    if (CudaDriver.loaded) return CudaDriver.loaded;
    const path = findLibrary('cuda', options);
    let api: DriverApi;
    try {
      api = bindDriver(koffi.load(path), path);
    } catch (e) {
      throw new BackendError(`cannot load the CUDA driver library ${path}: ${(e as Error).message}`, { file: path });
    }
    const status = api.cuInit(0);
    if (status !== 0) throw new BackendError(`cuInit failed with ${statusName(api, status)}: no usable NVIDIA GPU or driver on this machine`, { file: path });
    const version: [number] = [0];
    api.cuDriverGetVersion(version);
    CudaDriver.loaded = new CudaDriver(api, path, version[0]);
    return CudaDriver.loaded;
  }

  /** Throws a BackendError naming `call` and the status unless status is CUDA_SUCCESS. */
  check(call: string, status: number, context?: string): void {
    if (status !== 0) throw this.error(call, status, context);
  }

  error(call: string, status: number, context?: string): BackendError {
    return new BackendError(`CUDA driver call ${call} failed with ${statusName(this.api, status)}${context ? ` (${context})` : ''}`, { found: `status ${status}` });
  }

  /** CUDA 12.4 → "12.4". */
  get versionString(): string {
    return `${Math.floor(this.version / 1000)}.${(this.version % 1000) / 10}`;
  }
}

/** "CUDA_ERROR_OUT_OF_MEMORY: out of memory" for a status, or the number when the driver cannot name it. */
export function statusName(api: DriverApi, status: number): string {
  const name: [string | null] = [null];
  const text: [string | null] = [null];
  api.cuGetErrorName(status, name);
  api.cuGetErrorString(status, text);
  return `${name[0] ?? `CUresult ${status}`}${text[0] ? `: ${text[0]}` : ''}`;
}
