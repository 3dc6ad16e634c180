// The host tier (CPU DRAM): streamed weights in one arena, page-locked when the backend offers allocHost
// (so the device copies from it at full PCIe speed), one contiguous region per group.
import { CapacityError, type HostTensor, type OffloadTier, type StreamedWeight, type WeightName } from '@zinfer/core';
import { TENSOR_ALIGN } from './align.js';
import { copyGroup, entryView, groupViews, layoutGroup, type GroupLayout, type WeightEntry } from './group-layout.js';

export interface HostRegion {
  layout: GroupLayout;
  base: number;
}

export class HostTier implements OffloadTier {
  readonly name = 'host';
  readonly level = 'host' as const;
  private readonly arena: ArrayBuffer;
  private used = 0;
  private readonly where = new Map<WeightName, { entry: WeightEntry; base: number }>();

  /** `capacityBytes` is allocated at once, through `alloc` (the backend's allocHost, or plain memory). */
  constructor(alloc: (bytes: number) => ArrayBuffer, readonly capacityBytes: number) {
    this.arena = alloc(capacityBytes);
  }

  get usedBytes(): number {
    return this.used;
  }

  /** Copies a group into the next region of the arena. */
  putGroup(weights: readonly StreamedWeight[]): HostRegion {
    const layout = layoutGroup(weights, TENSOR_ALIGN);
    if (this.used + layout.regionBytes > this.capacityBytes) {
      throw new CapacityError('the host tier is full', { field: 'offload.hostMemory', expected: `at most ${this.capacityBytes} bytes`, found: `${this.used + layout.regionBytes} bytes` });
    }
    const base = this.used;
    copyGroup(layout, weights, new Uint8Array(this.arena, base, layout.regionBytes));
    for (const entry of layout.entries) this.where.set(entry.name, { entry, base });
    this.used += layout.regionBytes;
    return { layout, base };
  }

  /** The group's tensors: views over the arena, no copy. */
  groupViews(region: HostRegion): StreamedWeight[] {
    return groupViews(region.layout, this.arena, region.base);
  }

  async put(name: WeightName, tensor: HostTensor): Promise<void> {
    this.putGroup([{ name, tensor }]);
  }

  async fetch(name: WeightName): Promise<HostTensor> {
    const w = this.where.get(name);
    if (!w) throw new CapacityError('the host tier does not hold this weight', { field: 'offload', tensor: name });
    return entryView(w.entry, this.arena, w.base);
  }

  /** Forgets the weight (arena space is reclaimed only when the tier goes). */
  async release(name: WeightName): Promise<void> {
    this.where.delete(name);
  }
}
