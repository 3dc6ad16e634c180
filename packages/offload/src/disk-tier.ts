// The disk tier (NVMe): streamed weights in one file, one ALIGN-aligned region per group, so a group
// fetch is one large (direct, where allowed) read into a pinned buffer.
import { CapacityError, type HostTensor, type OffloadTier, type StreamedWeight, type WeightName } from '@zinfer/core';
import { ALIGN } from './align.js';
import type { AlignedBuffer, DiskFile } from './disk-file.js';
import { copyGroup, entryView, groupViews, layoutGroup, type GroupLayout, type WeightEntry } from './group-layout.js';

export interface DiskRegion {
  layout: GroupLayout;
  /** File offset of the region (a multiple of ALIGN). */
  offset: number;
}

export class DiskTier implements OffloadTier {
  readonly name = 'disk';
  readonly level = 'disk' as const;
  readonly capacityBytes = Number.POSITIVE_INFINITY; // bounded by the filesystem, which reports its own errors
  private readonly where = new Map<WeightName, { entry: WeightEntry; region: DiskRegion; group: number }>();
  private regions = 0;

  constructor(readonly file: DiskFile, private readonly alloc: (bytes: number) => ArrayBuffer) {}

  /** Writes a group as the next region of the file (holding only this group in memory). */
  async putGroup(weights: readonly StreamedWeight[]): Promise<DiskRegion> {
    const layout = layoutGroup(weights, ALIGN);
    const bytes = new Uint8Array(layout.regionBytes);
    copyGroup(layout, weights, bytes);
    const region = { layout, offset: await this.file.append(bytes) };
    const group = this.regions++;
    for (const entry of layout.entries) this.where.set(entry.name, { entry, region, group });
    return region;
  }

  /** Reads a region into `into` (sized for it) and returns its tensors as views over that buffer. */
  async readGroup(region: DiskRegion, into: AlignedBuffer, group: number): Promise<StreamedWeight[]> {
    await this.file.read(region.offset, new Uint8Array(into.buffer, into.base, region.layout.regionBytes), group);
    return groupViews(region.layout, into.buffer, into.base);
  }

  /** Reads a region into a buffer of its own. */
  async readGroupFresh(region: DiskRegion, group: number): Promise<StreamedWeight[]> {
    return this.readGroup(region, await this.file.alignedBuffer(this.alloc, region.layout.regionBytes), group);
  }

  /** The same, synchronously through the page cache (for handing resident layers to compile). */
  readGroupSync(region: DiskRegion, group: number): StreamedWeight[] {
    return groupViews(region.layout, this.file.readSync(region.offset, region.layout.regionBytes, group), 0);
  }

  async put(name: WeightName, tensor: HostTensor): Promise<void> {
    await this.putGroup([{ name, tensor }]);
  }

  async fetch(name: WeightName): Promise<HostTensor> {
    const w = this.where.get(name);
    if (!w) throw new CapacityError('the disk tier does not hold this weight', { field: 'offload', tensor: name });
    const weights = await this.readGroupFresh(w.region, w.group);
    return weights.find((x) => x.name === name)!.tensor;
  }

  async release(name: WeightName): Promise<void> {
    this.where.delete(name);
  }
}
