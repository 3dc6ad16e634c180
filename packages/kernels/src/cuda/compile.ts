// Compiles a graph for a Gpu: checks the nodes, loads the kernels (so NVRTC errors surface here), uploads
// the weights (resolving the activation dtype), plans the fusions and buffers, allocates the KV cache in
// the activation dtype or, opted in, fp8 e4m3 (plus one block no sequence owns: padded rows of a decode graph write there) and
// the rotary tables. Out of memory names the bytes asked and free; everything allocated so far is freed
// before the error propagates.
import { BackendError, type CompileOptions, type Graph, type KvCacheDtype, type OpNode, type WeightSource } from '@zinfer/core';
import { planBuffers } from './buffer-plan.js';
import { peerAllReduceFor } from './peer-allreduce.js';
import { f32OutputValues, programCollectives } from './collective-launch.js';
import { uploadWeights, type ActivationChoice } from './device-weights.js';
import { planExecution, type FusionOptions } from './exec-plan.js';
import { moeRoutingValues } from './moe-launch.js';
import type { Gpu } from './gpu.js';
import { CudaProgram, type ProgramParts } from './program.js';
import { fmtBytes } from './format.js';
import type { HostMemory } from './host-memory.js';
import { dtypeBytes, type ProgramOptions } from './step-context.js';
import { openStreamedWeights, streamedDtypeOf, type StreamedWeights } from './streamed-weights.js';
import { checkGraph } from './supports.js';

export interface CompileSettings extends ProgramOptions {
  activations: ActivationChoice;
  fusion: Omit<FusionOptions, 'weightDtype'>;
  /** Pinned host memory for streamed programs' staging (the backend's allocHost pool). */
  host?: HostMemory;
  /** The same pool, made on first use: KV-cache offload's host stores (Program.kvBlocks). */
  pinned?: () => HostMemory;
  /** The KV cache's element type: the activation dtype (default), or fp8 e4m3 (cuda/fp8.cuh; opt-in, lossy). */
  kvCache?: KvCacheDtype;
}

/** The cuda backend's kvCacheDtype option (unset: 'auto'); anything else is a BackendError naming it. */
export function parseKvCacheDtype(value: unknown): KvCacheDtype {
  if (value === undefined || value === 'auto' || value === 'fp8') return value ?? 'auto';
  throw new BackendError(`cuda backend option kvCacheDtype is ${JSON.stringify(value)}; it takes 'auto' (the activation dtype) or 'fp8' (e4m3)`, {
    field: 'kvCacheDtype', expected: "'auto' | 'fp8'", found: String(value),
  });
}

/** KV-cache bytes per block for a layout and an element size: K and V, every layer. */
export function kvCacheBytesPerBlock(kv: Graph['kv'], blockSize: number, elementBytes: number): number {
  return 2 * kv.layers * blockSize * kv.kvHeads * kv.headDim * elementBytes;
}

export async function compileProgram(gpu: Gpu, graph: Graph, source: WeightSource, options: CompileOptions, settings: CompileSettings): Promise<CudaProgram> {
  checkGraph(graph);
  const collectives = programCollectives(graph, options); // before any allocation: a host-only communicator is refused
  const { numBlocks, blockSize } = options.kvCache;
  for (const [field, n] of [['numBlocks', numBlocks], ['blockSize', blockSize]] as const) {
    if (!Number.isSafeInteger(n) || n < 1) throw new BackendError('KV cache size is not a positive integer', { field: `kvCache.${field}`, expected: 'an integer ≥ 1', found: String(n) });
  }
  gpu.enter();
  const owned: bigint[] = [];
  let streamed: StreamedWeights | null = null;
  try {
    gpu.loadKernels(); // NVRTC or module errors surface at compile, not at the first step
    collectives.peer = (await peerAllReduceFor(gpu, collectives.tensor)).reduce; // a collective: every rank of the group sets it up
    gpu.enter();
    // Streamed weights stay off the device; the program copies them into its slots while it runs.
    const { weights, act } = uploadWeights(gpu, graph, source, settings.activations, new Set(options.stream?.groups.flat()));
    for (const w of weights.values()) if (!w.shared) owned.push(w.ptr);
    const hasAttention = graph.nodes.some((n) => n.op === 'attention');
    let kv: ProgramParts['kv'] = null;
    if (hasAttention) {
      const blocks = numBlocks + 1; // the last: scratch for padded rows of decode graphs
      const fp8 = settings.kvCache === 'fp8' || options.kvCache.dtype === 'fp8'; // the backend's option, or the engine's limits.kvCacheDtype
      const total = kvCacheBytesPerBlock(graph.kv, blockSize, fp8 ? 1 : dtypeBytes(act)) * blocks;
      const { free } = gpu.memInfo();
      if (total > free) {
        throw new BackendError(`out of GPU memory for the KV cache: ${numBlocks} blocks of ${blockSize} tokens need ${fmtBytes(total)}, ${fmtBytes(free)} free on ${gpu.name}`, {
          field: 'kvCache.numBlocks', expected: `at most ${total} bytes`, found: `${free} bytes free`,
        });
      }
      const ptr = gpu.alloc(total, `KV cache (${numBlocks} blocks × ${blockSize} tokens, ${fp8 ? 'fp8 e4m3' : act})`);
      owned.push(ptr);
      gpu.fill32(ptr, 0, total / 4); // as the reference's zeroed cache: no stale values even in unread slots
      kv = { ptr, layerBytes: total / (2 * graph.kv.layers), spec: { numBlocks, blockSize }, scratchBlock: numBlocks, fp8 };
    }
    const invFreq = new Map<OpNode, bigint>();
    for (const node of graph.nodes) {
      if (node.op !== 'rotary') continue;
      const table = Float64Array.from(node.attrs.invFreq); // f64: the angle p·invFreq is formed in double
      const ptr = gpu.alloc(Math.max(table.byteLength, 8), 'rotary inverse frequencies');
      owned.push(ptr);
      if (table.length) gpu.upload(ptr, table);
      invFreq.set(node, ptr);
    }
    const streamedDtype = streamedDtypeOf(graph, weights, act);
    const plan = planExecution(graph, { ...settings.fusion, weightDtype: (name) => weights.get(name)?.dtype ?? streamedDtype(name) });
    if (options.stream) streamed = openStreamedWeights(gpu, graph, plan, options.stream, act, weights, settings.host);
    const routing = moeRoutingValues(graph); // MoE routing is f32 in every mode (exact ids, unrounded weights)
    const f32Values = f32OutputValues(graph);
    if (routing.has(graph.output)) f32Values.add(graph.output); // already f32: no conversion after the last node
    const outF32 = f32Values.size > 0;
    const elementBytes = (v: number) => (f32Values.has(v) || routing.has(v) ? 4 : dtypeBytes(act));
    // A gather read through its input only where both hold the same element type.
    for (const [out, x] of plan.gatherAlias) if (elementBytes(out) !== elementBytes(x)) plan.gatherAlias.delete(out);
    gpu.synchronize();
    return new CudaProgram({
      gpu, graph, weights, kv, invFreq, act, plan, outputF32: outF32, f32Values, collectives,
      buffers: planBuffers(graph, plan.extraUses, elementBytes, plan.earlyDefs), options: settings, streamed, pinned: settings.pinned,
    });
  } catch (e) {
    // Best effort: after a failed kernel the context may refuse these too, and the first error is the news.
    try {
      streamed?.dispose();
      for (const ptr of owned) gpu.free(ptr);
      gpu.dispose();
    } catch {
      // keep the original error
    }
    throw e;
  }
}
