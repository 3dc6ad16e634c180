// Compiling a rank's graph, with or without KV-cache offload. With it, the backend's program gets a
// device cache of `deviceBlocks` blocks and an OffloadedKvProgram keeps the engine's whole block pool in
// host memory around it. Every launch path (inline ranks, worker ranks, ranks of other nodes) compiles here.
import { ConfigError, type CompileOptions, type Graph, type KernelBackend, type Program, type StepBatch, type WeightSource } from '@zinfer/core';
import { DEVICE_BLOCKS_FIELD } from './kv-residency.js';
import { OffloadedKvProgram, type KvOffloadStats } from './offloaded-kv-program.js';

export interface KvOffloadOptions {
  /**
   * KV-cache blocks each rank keeps on its device; the engine's block pool (sized from limits.kvCacheBytes)
   * lives in host memory. Enough for two micro-batches lets the next one's blocks load while one runs; one
   * micro-batch needing more than this fails with a ConfigError naming parallel.kvOffload.deviceBlocks.
   */
  deviceBlocks: number;
}

/** The option as given, checked; null when absent. */
export function checkKvOffload(o: KvOffloadOptions | null | undefined): KvOffloadOptions | null {
  if (o === undefined || o === null) return null;
  const n = o.deviceBlocks;
  if (!(Number.isSafeInteger(n) && n > 0)) throw new ConfigError('KV-cache offload needs a positive whole number of device blocks', { field: DEVICE_BLOCKS_FIELD, expected: 'an integer ≥ 1', found: String(n) });
  return { deviceBlocks: n };
}

export async function compileRank(backend: KernelBackend, graph: Graph, weights: WeightSource, options: CompileOptions, kvOffload: KvOffloadOptions | null | undefined): Promise<Program> {
  if (!kvOffload) return backend.compile(graph, weights, options);
  const { numBlocks, blockSize } = options.kvCache;
  const deviceBlocks = Math.min(kvOffload.deviceBlocks, numBlocks); // more than the pool would stay unused
  const inner = await backend.compile(graph, weights, { ...options, kvCache: { ...options.kvCache, numBlocks: deviceBlocks } });
  try {
    const transfer = inner.kvBlocks;
    if (!transfer) {
      throw new ConfigError(`backend ${backend.name} cannot move KV-cache blocks to host memory (its programs have no kvBlocks)`, {
        field: 'parallel.kvOffload', expected: 'a backend whose programs have kvBlocks (reference, cpu, cuda), or no kvOffload', found: backend.name,
      });
    }
    return new OffloadedKvProgram(inner, transfer, numBlocks, deviceBlocks, blockSize);
  } catch (e) {
    await inner.dispose();
    throw e;
  }
}

/** Tells an offloaded program of a micro-batch it will run (double buffering); other programs ignore it. */
export function announceStep(program: Program, batch: StepBatch): void {
  if (program instanceof OffloadedKvProgram) program.prepare(batch);
}

/** An offloaded program's copy counts; null for another program. */
export function kvOffloadStatsOf(program: Program): KvOffloadStats | null {
  return program instanceof OffloadedKvProgram ? { ...program.stats } : null;
}
