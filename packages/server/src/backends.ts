// Maps --backend names to KernelBackend factories. The one list of names lives here (help text, choices
// and errors read it). Backends load lazily, so `zinfer --help` or a reference run never loads the
// WebAssembly or CUDA code.
import { BackendError, ConfigError, type KernelBackend } from '@zinfer/core';

export interface BackendOptions {
  /** Worker threads of backends that have a pool (cpu); others ignore it. */
  threads?: number;
}

type BackendLoader = (opts: BackendOptions) => Promise<{ backend: KernelBackend; whyNot?: () => string | null }>;

const BACKENDS = {
  reference: async () => ({ backend: (await import('@zinfer/kernels/reference')).referenceBackend() }),
  cpu: async ({ threads }: BackendOptions) => ({ backend: (await import('@zinfer/kernels/cpu')).cpuBackend(threads === undefined ? {} : { threads }) }),
  cuda: async () => {
    const cuda = await import('@zinfer/kernels/cuda');
    return { backend: cuda.cudaBackend(), whyNot: () => cuda.probeFailure(0) };
  },
} satisfies Record<string, BackendLoader>;

export type BackendName = keyof typeof BACKENDS;

/** Every name of the CLI contract. */
export const BACKEND_NAMES = Object.keys(BACKENDS) as BackendName[];

/** The names that run in this build (all of them; kept for callers that list choices). */
export const AVAILABLE_BACKENDS = BACKEND_NAMES;

/** Creates the named backend and checks that it can run on this machine. */
export async function createBackend(name: string, opts: BackendOptions = {}): Promise<KernelBackend> {
  const loaders: Record<string, BackendLoader> = BACKENDS;
  if (!Object.hasOwn(loaders, name)) {
    throw new ConfigError(`unknown backend ${name}`, { field: 'backend', expected: BACKEND_NAMES.join(' | '), found: name });
  }
  const { backend, whyNot } = await loaders[name](opts);
  if ((await backend.probe()) === null) {
    const reason = whyNot?.();
    throw new BackendError(`backend ${name} cannot run on this machine${reason ? `: ${reason}` : ''}`, { field: 'backend', expected: 'a machine with the device this backend needs', found: 'none usable' });
  }
  return backend;
}
