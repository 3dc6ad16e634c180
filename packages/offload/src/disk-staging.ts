// Filling the disk tier: each group is written to the offload file as soon as it is read (so place()
// holds one layer at a time), resident ones included; after the plan, the resident layers are read back
// once for compile and the others stream through the read buffers. The file lives in a fresh directory
// (under `dir`, or the system temp dir) that close() removes, and so does process exit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostTensor, StreamedWeight, WeightName } from '@zinfer/core';
import { formatBytes, formatLayers } from './align.js';
import { DiskFile } from './disk-file.js';
import { DiskStream } from './disk-stream.js';
import { DiskTier, type DiskRegion } from './disk-tier.js';
import type { Plan } from './placement-plan.js';
import type { Staged, Staging, StagingOptions } from './staging.js';

export async function diskStaging(opts: StagingOptions, layers: readonly number[]): Promise<Staging> {
  const dir = mkdtempSync(join(opts.dir ?? tmpdir(), 'zinfer-offload-'));
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  process.once('exit', removeDir);
  const file = await DiskFile.create(join(dir, 'weights.bin')).catch((e: unknown) => {
    removeDir();
    throw e;
  });
  const tier = new DiskTier(file, opts.alloc);
  const regions: DiskRegion[] = [];
  const close = async () => {
    await file.close();
    removeDir();
    process.off('exit', removeDir);
  };
  return {
    async add(weights) {
      regions.push(await tier.putGroup(weights));
    },
    async finish(plan: Plan): Promise<Staged> {
      await file.seal(opts.directIo);
      const streamed = regions.slice(plan.resident);
      const regionBytes = Math.max(0, ...streamed.map((r) => r.layout.regionBytes));
      const count = Math.min(opts.buffers, streamed.length);
      const buffers = [];
      for (let i = 0; i < count; i++) buffers.push(await file.alignedBuffer(opts.alloc, regionBytes));
      const groups = streamed.map((r) => r.layout.entries.map((e) => e.name));
      const stream = streamed.length ? new DiskStream(groups, opts.prefetch, tier, streamed, buffers) : null;
      const bytes = streamed.reduce((a, r) => a + r.layout.regionBytes, 0);
      const line = `disk: layers ${formatLayers(layers.slice(plan.resident))} streamed, ${formatBytes(bytes)} in ${file.path} (${file.direct ? 'O_DIRECT' : 'buffered'} reads, ${count} ${opts.pinned ? 'pinned' : 'plain'} read buffer${count === 1 ? '' : 's'} of ${formatBytes(regionBytes)})`;
      const readBack = residentReader(tier, regions.slice(0, plan.resident));
      return {
        stream,
        line,
        file: file.path,
        residentWeight: readBack,
        close: async () => {
          await stream?.close();
          await close();
        },
      };
    },
    abort: close,
  };
}

/** Resident layer weights from the file, one group in memory at a time (compile asks layer by layer). */
function residentReader(tier: DiskTier, regions: readonly DiskRegion[]): (name: WeightName) => HostTensor | undefined {
  const groupOf = new Map<WeightName, number>();
  regions.forEach((r, g) => r.layout.entries.forEach((e) => groupOf.set(e.name, g)));
  let cached: { group: number; weights: Map<WeightName, HostTensor> } | null = null;
  return (name) => {
    const g = groupOf.get(name);
    if (g === undefined) return undefined;
    if (cached?.group !== g) cached = { group: g, weights: new Map(tier.readGroupSync(regions[g], g).map((w) => [w.name, w.tensor])) };
    return cached.weights.get(name);
  };
}
