import type { KernelBackend, KvCacheSpec, Program, StepBatch } from '../contracts.js';
import { GraphBuilder, type Graph, type KvLayout } from '../graph.js';
import type { ValueId, WeightName } from '../ops.js';
import { Rng } from '../sampling/rng.js';
import { range, stepBatch } from './batch.js';
import { memoryWeights, weightInfos, type TensorSet } from './weights.js';

/** One check; run() resolves when the backend conforms and throws an Error saying how it does not. */
export interface ConformanceCase {
  name: string;
  run(): Promise<void>;
}

export interface ConformanceOptions {
  /** A trusted backend (usually `reference`) to compare random shapes against; without it those cases are left out. */
  oracle?: KernelBackend;
  /** Allowed |got − expected| as a fraction of max|expected| over the compared output. Default 1e-4. */
  tolerance?: number;
  /** Seeds every random weight, input and shape. Default 1. */
  seed?: number;
}

/** What every group of cases is built from. */
export interface Harness {
  backend: KernelBackend;
  oracle: KernelBackend | null;
  tolerance: number;
  seed: number;
}

export const DEFAULT_TOLERANCE = 1e-4;

/** A PRNG per case, from the seed and the case's name, so cases do not depend on each other's order. */
export function caseRng(h: Harness, name: string): Rng {
  let hash = 0x811c9dc5; // FNV-1a
  for (const ch of `${h.seed}:${name}`) hash = Math.imul(hash ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return Rng.fromSeed(hash);
}

/** Compiles, runs `steps` in order on one program (one KV cache), disposes, and returns each output. */
export async function runSteps(backend: KernelBackend, graph: Graph, tensors: TensorSet, kvCache: KvCacheSpec, steps: readonly StepBatch[]): Promise<Float32Array[]> {
  return withProgram(backend, graph, tensors, kvCache, async (program) => {
    const out: Float32Array[] = [];
    for (const s of steps) out.push(await program.run(s));
    return out;
  });
}

export async function withProgram<T>(backend: KernelBackend, graph: Graph, tensors: TensorSet, kvCache: KvCacheSpec, use: (p: Program) => Promise<T>): Promise<T> {
  const program = await backend.compile(graph, memoryWeights(tensors), { kvCache });
  try {
    return await use(program);
  } finally {
    await program.dispose();
  }
}

/** No attention: the KV layout only has to be well-formed. */
export const NO_KV: KvLayout = { layers: 0, kvHeads: 1, headDim: 1 };

/**
 * A graph for testing one op: each float input is an embedding of the step's token ids into a table
 * of `tensors` (token id r → table row r), so inputs are exact f32 rows the test chose.
 */
export function opGraph(tensors: TensorSet, build: (b: GraphBuilder, input: (table: WeightName) => ValueId) => ValueId, kv: KvLayout = NO_KV): Graph {
  const b = new GraphBuilder(weightInfos(tensors), kv);
  return b.build(build(b, (table) => b.embedding(b.inputs.tokenIds, table)));
}

/** One sequence of `rows` fresh tokens 0..rows-1 (positions 0..rows-1), every row selected. */
export function rowsBatch(rows: number, blockSize = 16): StepBatch {
  return stepBatch([{ tokens: range(rows), cached: 0, blocks: range(Math.ceil(rows / blockSize)) }], blockSize, 'all');
}

/** Runs a one-step op graph on the backend; the cache is unused unless the graph has attention. */
export async function runOp(backend: KernelBackend, tensors: TensorSet, graph: Graph, batch: StepBatch, kvCache: KvCacheSpec = { numBlocks: 64, blockSize: 16 }): Promise<Float32Array> {
  const [out] = await runSteps(backend, graph, tensors, kvCache, [batch]);
  return out;
}
