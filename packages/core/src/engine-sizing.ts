// The KV cache and batch limits of an engine. With numbers the config's own (kvCacheBytes capped at what
// maxSequences × maxContext can use); in throughput mode — ZeRO-Inference's use of the device memory that
// offloading frees — 'auto': the KV cache takes the device memory the weights leave (the backend's probe,
// less the weights held on the device and a reserve for activations), and as many sequences run as it holds
// at maxContext tokens each, with a decode step able to take them all.
import type { KernelBackend, WeightSource } from './contracts.js';
import type { Graph } from './graph.js';
import { byteSize } from './dtype.js';
import { CapacityError } from './errors.js';
import { numel } from './tensor.js';

/** Device memory kept back in throughput mode for activations and workspaces: this share of it, and at least the floor. */
export const AUTO_RESERVE_SHARE = 0.1;
export const AUTO_RESERVE_BYTES = 512 * 2 ** 20;
/** Most sequences throughput mode runs at once. */
export const AUTO_MAX_SEQUENCES = 1024;

export interface CacheLimits {
  kvCacheBytes: number | 'auto';
  blockSize: number;
  maxSequences: number | 'auto';
  maxBatchTokens: number;
  /** Whether maxBatchTokens came from the config (not the default). */
  batchTokensSet: boolean;
}

export interface CacheSizing {
  numBlocks: number;
  maxSequences: number;
  maxBatchTokens: number;
  /** The bytes the KV cache was given (the config's, or what throughput mode found). */
  kvCacheBytes: number;
}

export interface SizingInputs {
  backend: KernelBackend;
  /** A device's graph (a rank's share under a parallel plan). */
  graph: Graph;
  weights: WeightSource;
  maxContext: number;
  /** KV-cache bytes of one block on one device. */
  perBlock: number;
  /** Bytes of weights the device keeps, when an offload placement says; else every weight of `graph`. */
  deviceWeightBytes?: number;
}

export async function sizeCache(limits: CacheLimits, s: SizingInputs): Promise<CacheSizing> {
  const perSequence = Math.ceil(s.maxContext / limits.blockSize);
  const kvCacheBytes = limits.kvCacheBytes === 'auto' ? await freeDeviceBytes(s) : limits.kvCacheBytes;
  const cap = (limits.maxSequences === 'auto' ? AUTO_MAX_SEQUENCES : limits.maxSequences) * perSequence;
  const numBlocks = Math.min(Math.floor(kvCacheBytes / s.perBlock), cap);
  if (numBlocks < 1) throw new CapacityError('the KV-cache budget holds not even one block', { field: 'limits.kvCacheBytes', expected: `at least ${s.perBlock}`, found: String(kvCacheBytes) });
  const maxSequences = limits.maxSequences === 'auto' ? Math.max(1, Math.min(AUTO_MAX_SEQUENCES, Math.floor(numBlocks / perSequence))) : limits.maxSequences;
  const maxBatchTokens = limits.maxSequences === 'auto' && !limits.batchTokensSet ? Math.max(limits.maxBatchTokens, maxSequences) : limits.maxBatchTokens;
  return { numBlocks, maxSequences, maxBatchTokens, kvCacheBytes };
}

/** Bytes of every weight of a graph as the source stores them (headers only). */
export function graphWeightBytes(graph: Graph, weights: WeightSource): number {
  let bytes = 0;
  for (const [name, w] of graph.weights) bytes += byteSize(weights.dtypeOf?.(name) ?? 'f32', numel(w.shape));
  return bytes;
}

/** What throughput mode gives the KV cache: free device memory less the weights kept there and the reserve. */
async function freeDeviceBytes(s: SizingInputs): Promise<number> {
  const device = await s.backend.probe();
  if (!device) throw new CapacityError(`backend ${s.backend.name} found no device to size the KV cache from`, { field: 'limits.kvCacheBytes', expected: 'a number of bytes', found: "'auto'" });
  const weights = s.deviceWeightBytes ?? graphWeightBytes(s.graph, s.weights);
  const reserve = Math.max(AUTO_RESERVE_BYTES, AUTO_RESERVE_SHARE * device.memoryBytes);
  const bytes = Math.floor(device.memoryBytes - weights - reserve);
  if (bytes < s.perBlock) {
    throw new CapacityError(`${device.description} has no memory left for the KV cache after the weights`, {
      field: 'limits.kvCacheBytes', expected: `more than ${weights + reserve} bytes free (weights ${weights}, reserve ${reserve})`, found: `${device.memoryBytes} bytes`,
    });
  }
  return bytes;
}
