// --offload, --device-memory, --prefetch and --offload-dir as the engine config's `offload` plugin.
import { Option } from 'commander';
import { ConfigError, type WeightOffload } from '@zinfer/core';
import { weightOffload } from '@zinfer/offload';
import { parseBytes, parseInteger } from './parse-flags.js';

export interface OffloadFlags {
  offload?: 'host' | 'disk';
  deviceMemory?: number;
  prefetch?: number;
  offloadDir?: string;
  tp: number;
  pp: number;
  ep: number;
  /** Data-parallel ranks: the one parallel flag offload combines with (the ranks fetch each layer together). */
  dp?: number;
}

/** --offload, --device-memory, --prefetch and --offload-dir, for the generate and serve commands. */
export function offloadOptions(): Option[] {
  return [
    new Option('--offload <tier>', 'keep the layers beyond --device-memory in host memory or on disk and stream them in').choices(['host', 'disk']),
    new Option('--device-memory <bytes>', 'with --offload: weight budget of the compute device, e.g. 16GiB (default: every layer streams)').argParser(parseBytes),
    new Option('--prefetch <n>', 'with --offload: layers fetched ahead of the one computing (default 1)').argParser(parseInteger),
    new Option('--offload-dir <dir>', 'with --offload disk: where the weight file goes (default: a temp dir, removed at exit)'),
  ];
}

/** The offload plugin the flags ask for, or undefined when weights stay resident. */
export function offloadFromFlags(o: OffloadFlags): WeightOffload | undefined {
  if (o.offload === undefined) {
    const stray = (['deviceMemory', 'prefetch', 'offloadDir'] as const).find((k) => o[k] !== undefined);
    if (stray) {
      const flag = stray.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      throw new ConfigError(`--${flag.replaceAll('_', '-')} only applies with --offload host|disk`, { field: flag, expected: '--offload host or --offload disk', found: 'no --offload' });
    }
    return undefined;
  }
  if (o.tp > 1 || o.pp > 1 || o.ep > 1) {
    throw new ConfigError('--offload does not combine with --tp, --pp or --ep yet (--dp N does)', { field: 'offload', expected: '--tp 1 --pp 1 --ep 1 with --offload (or --dp N)', found: `--tp ${o.tp} --pp ${o.pp} --ep ${o.ep}` });
  }
  if (o.offloadDir !== undefined && o.offload !== 'disk') throw new ConfigError('--offload-dir only applies with --offload disk', { field: 'offload_dir', expected: '--offload disk', found: `--offload ${o.offload}` });
  return weightOffload({
    tier: o.offload,
    ...(o.deviceMemory !== undefined ? { deviceMemory: o.deviceMemory } : {}),
    ...(o.prefetch !== undefined ? { prefetch: o.prefetch } : {}),
    ...(o.offloadDir !== undefined ? { dir: o.offloadDir } : {}),
  });
}

/** The placement summary, one line each, for stderr (stdout stays the command's output). */
export function offloadSummary(lines: readonly string[] | undefined): string {
  return (lines ?? []).map((l) => `zinfer: offload ${l}\n`).join('');
}
