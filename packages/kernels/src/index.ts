// @zinfer/kernels: kernel backends (re-exports only; each backend is also a subpath export).
export { referenceBackend } from './reference.js';
