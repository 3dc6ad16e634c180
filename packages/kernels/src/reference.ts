// The reference kernel backend: plain TypeScript, the executable definition of every op. Faster backends
// are tested against it, so each op is written for clarity and exactness (f32 activations, sums in
// doubles, f16/bf16 weights widened exactly), and fast enough to run a ~10M-parameter model.
import { CONTRACT_VERSION, type KernelBackend } from '@zinfer/core';
import { cpus, totalmem } from 'node:os';
import { compileReference } from './reference/compile.js';
import { kvBytesPerBlock } from './reference/kv-cache.js';
import { supports } from './reference/supports.js';

export function referenceBackend(): KernelBackend {
  return {
    name: 'reference',
    contractVersion: CONTRACT_VERSION,
    factory: { module: '@zinfer/kernels/reference', exportName: 'referenceBackend' },
    async probe() {
      return { device: 'cpu', description: cpus()[0]?.model.trim() || 'host CPU', memoryBytes: totalmem() };
    },
    supports,
    kvBytesPerBlock: (graph, blockSize) => kvBytesPerBlock(graph.kv, blockSize),
    // Streamed weights (offload) are used straight from the stream's host buffers while their group is held.
    streaming: true,
    compile: compileReference,
  };
}

// The ops themselves, for backends and tests that check one kernel against its definition.
export { activation, gelu, geluTanh, relu, silu, ACTIVATION_FNS } from './reference/activations.js';
export { attention } from './reference/attention.js';
export { embedding } from './reference/embedding.js';
export { erf } from './reference/erf.js';
export { KvCache } from './reference/kv-cache.js';
export { linear } from './reference/linear.js';
export { layerNorm, rmsNorm } from './reference/norms.js';
export { moeExperts, moeRouter, sigmoidGate, type ExpertWeights } from './reference/moe.js';
export { rotary } from './reference/rotary.js';
export { add, gatherRows } from './reference/rows.js';
export { F16_TO_F32, WeightRows, weightVector } from './reference/weights.js';
