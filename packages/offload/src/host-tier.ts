// The host tier (CPU DRAM): streamed weights page-locked when the backend offers allocHost (so the device
// copies from it at full PCIe speed), one contiguous allocation per group. Not one arena for the tier: a
// 95 GB model would need a single ArrayBuffer over 95 GB of pinned memory, which Node cannot make.
import { CapacityError, type HostTensor, type OffloadTier, type StreamedWeight, type WeightName } from '@zinfer/core';
import { TENSOR_ALIGN } from './align.js';
import { copyGroup, entryView, groupViews, layoutGroup, type GroupLayout, type WeightEntry } from './group-layout.js';

export interface HostRegion {
  layout: GroupLayout;
  buffer: ArrayBuffer;
}

export class HostTier implements OffloadTier {
  readonly name = 'host';
  readonly level = 'host' as const;
  private used = 0;
  private readonly where = new Map<WeightName, { entry: WeightEntry; buffer: ArrayBuffer }>();

  /** Up to `capacityBytes`, allocated group by group through `alloc` (the backend's allocHost, or plain memory). */
  constructor(private readonly alloc: (bytes: number) => ArrayBuffer, readonly capacityBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  /** Copies a group into the next region of the arena. */
  putGroup(weights: readonly StreamedWeight[]): HostRegion {
    const layout = layoutGroup(weights, TENSOR_ALIGN);
    if (this.used + layout.regionBytes > this.capacityBytes) {
      throw new CapacityError('the host tier is full', { field: 'offload.hostMemory', expected: `at most ${this.capacityBytes} bytes`, found: `${this.used + layout.regionBytes} bytes` });
    }
    const buffer = this.alloc(layout.regionBytes);
    copyGroup(layout, weights, new Uint8Array(buffer, 0, layout.regionBytes));
    for (const entry of layout.entries) this.where.set(entry.name, { entry, buffer });
    this.used += layout.regionBytes;
    return { layout, buffer };
  }

  /** The group's tensors: views over its allocation, no copy. */
  groupViews(region: HostRegion): StreamedWeight[] {
    return groupViews(region.layout, region.buffer, 0);
  }

  async put(name: WeightName, tensor: HostTensor): Promise<void> {
    this.putGroup([{ name, tensor }]);
  }

  async fetch(name: WeightName): Promise<HostTensor> {
    const w = this.where.get(name);
    if (!w) throw new CapacityError('the host tier does not hold this weight', { field: 'offload', tensor: name });
    return entryView(w.entry, w.buffer, 0);
  }

  /** Forgets the weight (its group's allocation is reclaimed only when the tier goes). */
  async release(name: WeightName): Promise<void> {
    this.where.delete(name);
  }
}
