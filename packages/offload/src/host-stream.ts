// Streaming from the host tier: the group's tensors are views over the arena, so acquiring is free here
// and the device's copy from (pinned) host memory is the whole transfer.
import type { StreamedWeight, WeightName } from '@zinfer/core';
import type { HostRegion, HostTier } from './host-tier.js';
import { StreamBase } from './stream-base.js';

export class HostStream extends StreamBase {
  constructor(groups: readonly (readonly WeightName[])[], prefetch: number, private readonly tier: HostTier, private readonly regions: readonly HostRegion[]) {
    super(groups, prefetch);
  }

  protected async load(group: number): Promise<StreamedWeight[]> {
    const start = performance.now();
    const weights = this.tier.groupViews(this.regions[group]);
    this.recordFetch(group, start, performance.now());
    return weights;
  }

  protected unload(): void {}

  async close(): Promise<void> {}
}
