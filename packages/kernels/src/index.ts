// @zinfer/kernels: kernel backends (re-exports only; each backend is also a subpath export).
export { referenceBackend } from './reference.js';
export { cpuBackend, defaultCpuThreads, MAX_DEFAULT_CPU_THREADS, type CpuBackendOptions } from './cpu.js';
export { cudaBackend } from './cuda.js';
