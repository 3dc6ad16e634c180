// What the CUDA backend found on this machine, for tools that report it (scripts/gpu-check.mjs): library
// paths (or why each is missing), versions, the kernel folder, and how the kernels were last loaded.
import { CudaDevice } from './device.js';
import { CudaDriver } from './driver.js';
import { loadKernelSources } from './kernel-sources.js';
import { findIncludeDir, findLibrary, SONAMES, type CudaLibrary } from './libraries.js';
import { Nvrtc } from './nvrtc.js';

export interface CudaDiagnostics {
  kernelDir: string;
  kernels: number;
  /** Path of each library, or the error saying why it was not found. */
  libraries: Record<CudaLibrary, { path: string } | { error: string }>;
  includeDir: string | null;
  driverVersion: string | null;
  nvrtcVersion: string | null;
  nvrtcArchs: number[];
  /** How the kernels were compiled/loaded on the device, once a program has been compiled there. */
  kernelLoad: { compiled: string[]; cacheFiles: string[]; nvrtc: string; seconds: number } | null;
}

export function cudaDiagnostics(ordinal = 0): CudaDiagnostics {
  const libraries = {} as CudaDiagnostics['libraries'];
  for (const lib of Object.keys(SONAMES) as CudaLibrary[]) {
    try {
      libraries[lib] = { path: findLibrary(lib) };
    } catch (e) {
      libraries[lib] = { error: (e as Error).message };
    }
  }
  const sources = loadKernelSources();
  let driverVersion: string | null = null;
  try {
    driverVersion = CudaDriver.load().versionString;
  } catch {
    // no driver: reported through libraries.cuda
  }
  let nvrtc: Nvrtc | null = null;
  try {
    nvrtc = Nvrtc.open();
  } catch {
    // reported through libraries.nvrtc
  }
  return {
    kernelDir: sources.dir,
    kernels: sources.kernels.size,
    libraries,
    includeDir: findIncludeDir(nvrtc?.path ?? null),
    driverVersion,
    nvrtcVersion: nvrtc?.version ?? null,
    nvrtcArchs: nvrtc?.supportedArchs() ?? [],
    kernelLoad: CudaDevice.opened(ordinal)?.kernelLoad ?? null,
  };
}
