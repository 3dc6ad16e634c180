// @zinfer/server public API (re-exports only).
export { runCli } from './program.js';
export type { CliIo } from './cli-io.js';
export { BACKEND_NAMES, AVAILABLE_BACKENDS, createBackend, type BackendName, type BackendOptions } from './backends.js';
export { startServer, type ZinferServer } from './server.js';
export { DEFAULT_LIMITS, type ServerOptions, type ServerLimits } from './server-options.js';
export { ServerMetrics } from './metrics.js';
export { defaultModelDir } from './default-model.js';
