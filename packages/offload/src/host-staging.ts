// Filling the host tier: groups wait as read until the plan is known; then the streamed ones are copied
// into one (pinned) arena sized for exactly them, and the resident ones go to the device tier.
import { CapacityError, type StreamedWeight } from '@zinfer/core';
import { formatBytes, formatLayers, TENSOR_ALIGN } from './align.js';
import type { DeviceTier } from './device-tier.js';
import { layoutGroup } from './group-layout.js';
import { HostStream } from './host-stream.js';
import { HostTier } from './host-tier.js';
import type { Plan } from './placement-plan.js';
import type { Staged, Staging, StagingOptions } from './staging.js';

export function hostStaging(opts: StagingOptions, device: DeviceTier, layers: readonly number[]): Staging {
  const pending: (StreamedWeight[] | null)[] = [];
  return {
    async add(weights) {
      pending.push(weights);
    },
    async finish(plan: Plan): Promise<Staged> {
      for (const ws of pending.slice(0, plan.resident)) for (const w of ws!) device.hold(w.name, w.tensor);
      const streamed = pending.slice(plan.resident) as StreamedWeight[][];
      pending.length = 0;
      const bytes = streamed.reduce((a, ws) => a + layoutGroup(ws, TENSOR_ALIGN).regionBytes, 0);
      if (opts.hostMemory !== undefined && bytes > opts.hostMemory) {
        throw new CapacityError(`the host tier cannot hold the ${streamed.length} streamed layers`, {
          field: 'offload.hostMemory', expected: `at least ${bytes} bytes (or a larger --device-memory, or the disk tier)`, found: `${opts.hostMemory} bytes`,
        });
      }
      const tier = new HostTier(opts.alloc, bytes);
      const regions = streamed.map((ws) => tier.putGroup(ws));
      const stream = streamed.length ? new HostStream(streamed.map((ws) => ws.map((w) => w.name)), opts.prefetch, tier, regions) : null;
      const line = `host: layers ${formatLayers(layers.slice(plan.resident))} streamed, ${formatBytes(bytes)} in ${opts.pinned ? 'pinned' : 'plain'} memory${opts.hostMemory === undefined ? '' : ` (budget ${formatBytes(opts.hostMemory)})`}`;
      return { stream, line, file: null, residentWeight: () => undefined, close: async () => {} };
    },
    async abort() {
      pending.length = 0;
    },
  };
}
