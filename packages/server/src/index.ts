// @zinfer/server public API (re-exports only).
export { runCli } from './program.js';
export type { CliIo } from './cli-io.js';
export { BACKEND_NAMES, AVAILABLE_BACKENDS, createBackend, type BackendName } from './backends.js';
