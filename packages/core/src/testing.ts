// @zinfer/core/testing: the conformance suite plugin authors run against their KernelBackend, the small
// builders it uses, and engine runs the packages' parity tests share (re-exports only).
export { kernelBackendConformance } from './testing/conformance.js';
export { DEFAULT_TOLERANCE, type ConformanceCase, type ConformanceOptions } from './testing/harness.js';
export { expectClose, maxAbs, relativeDifference } from './testing/compare.js';
export { range, stepBatch, type SequencePart } from './testing/batch.js';
export { memoryWeights, randomTensor, tensorOf, matrix, weightInfos } from './testing/weights.js';
export { tinyLlama, TINY_LLAMA, type TinyLlamaConfig } from './testing/tiny-llama.js';
export { memoryWeightStream, type MemoryStream } from './testing/memory-stream.js';
export { aloneAndTogether, greedyRun } from './testing/engine-runs.js';
