// Maps --backend names to KernelBackend factories. The one list of names lives here (help text, choices
// and errors read it). Backends load lazily, so `zinfer --help` or a reference run never loads a native
// backend, and a backend that is not in this build says so instead of failing on import.
import { BackendError, ConfigError, type KernelBackend } from '@zinfer/core';

type BackendLoader = () => Promise<KernelBackend>;

const BACKENDS = {
  reference: async () => (await import('@zinfer/kernels/reference')).referenceBackend(),
  cpu: null,
  cuda: null,
} satisfies Record<string, BackendLoader | null>;

export type BackendName = keyof typeof BACKENDS;

/** Every name of the CLI contract, available in this build or not. */
export const BACKEND_NAMES = Object.keys(BACKENDS) as BackendName[];

/** The names that actually run in this build. */
export const AVAILABLE_BACKENDS = BACKEND_NAMES.filter((n) => BACKENDS[n] !== null);

/** Creates the named backend and checks that it can run on this machine. */
export async function createBackend(name: string): Promise<KernelBackend> {
  const loaders: Record<string, BackendLoader | null> = BACKENDS;
  if (!Object.hasOwn(loaders, name)) {
    throw new ConfigError(`unknown backend ${name}`, { field: 'backend', expected: BACKEND_NAMES.join(' | '), found: name });
  }
  const load = loaders[name];
  if (load === null) {
    throw new ConfigError(`backend ${name} is not available in this build yet`, { field: 'backend', expected: AVAILABLE_BACKENDS.join(' | '), found: name });
  }
  const backend = await load();
  if ((await backend.probe()) === null) throw new BackendError(`backend ${name} cannot run on this machine`, { field: 'backend' });
  return backend;
}
