// weightOffload(): the ZeRO-Inference plugin. place() reads every weight once: the non-layer ones stay
// on the device, each layer group goes into the tier as it is read; then the plan keeps the leading
// layers that fit the device budget resident and streams the others from the host or disk tier.
import { CONTRACT_VERSION, ConfigError, type WeightOffload } from '@zinfer/core';
import { placeWeights, type WeightPlacement } from './place-weights.js';

export interface WeightOffloadOptions {
  /** Where the layers beyond the device budget live: 'host' (DRAM, pinned where the backend can) or 'disk' (a file). */
  tier: 'host' | 'disk';
  /** Weight budget of the compute device in bytes; omitted, every layer streams (the smallest device footprint). */
  deviceMemory?: number;
  /** Most bytes the host tier may hold (host tier only); omitted, no limit. */
  hostMemory?: number;
  /** Directory for the disk tier's file (default: the system temp dir); a fresh subdirectory is removed at close. */
  dir?: string;
  /** Groups fetched ahead of the one computing (default 1). */
  prefetch?: number;
  /** Disk read buffers (default prefetch + 2: the program may hold prefetch + 1 while the disk reads the next; at least prefetch + 1). */
  buffers?: number;
  /** Try O_DIRECT reads on the disk tier (default true; falls back where the filesystem refuses). */
  directIo?: boolean;
}

export function weightOffload(options: WeightOffloadOptions): WeightOffload {
  const o = checkOptions(options);
  return {
    name: `offload(${o.tier}, prefetch ${o.prefetch})`,
    contractVersion: CONTRACT_VERSION,
    factory: { module: '@zinfer/offload', exportName: 'weightOffload', options: { ...options } },
    place: (args): Promise<WeightPlacement> => placeWeights(o, args.graph, args.weights, args.backend, args.shard),
  };
}

export type CheckedOptions = Required<Pick<WeightOffloadOptions, 'tier' | 'prefetch' | 'buffers' | 'directIo'>> & Pick<WeightOffloadOptions, 'deviceMemory' | 'hostMemory' | 'dir'>;

function checkOptions(o: WeightOffloadOptions): CheckedOptions {
  if (typeof o !== 'object' || o === null) throw new ConfigError('weightOffload needs an options object', { field: 'offload', expected: "{ tier: 'host' | 'disk', ... }", found: String(o) });
  if (o.tier !== 'host' && o.tier !== 'disk') throw new ConfigError('unknown offload tier', { field: 'offload.tier', expected: "'host' or 'disk'", found: String(o.tier) });
  const prefetch = o.prefetch ?? 1;
  count(prefetch, 'offload.prefetch', 0);
  const buffers = o.buffers ?? prefetch + 2;
  count(buffers, 'offload.buffers', prefetch + 1);
  for (const field of ['deviceMemory', 'hostMemory'] as const) if (o[field] !== undefined) count(o[field]!, `offload.${field}`, 0);
  if (o.hostMemory !== undefined && o.tier !== 'host') throw new ConfigError('hostMemory only applies to the host tier', { field: 'offload.hostMemory', expected: "tier 'host'", found: `tier '${o.tier}'` });
  if (o.dir !== undefined && (typeof o.dir !== 'string' || o.tier !== 'disk')) throw new ConfigError('dir applies to the disk tier and is a path', { field: 'offload.dir', expected: "a directory, with tier 'disk'", found: `${String(o.dir)} with tier '${o.tier}'` });
  return { tier: o.tier, prefetch, buffers, directIo: o.directIo ?? true, deviceMemory: o.deviceMemory, hostMemory: o.hostMemory, dir: o.dir };
}

function count(v: number, field: string, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(`${field} must be an integer ≥ ${min}`, { field, expected: `an integer ≥ ${min}`, found: String(v) });
}
