// Streaming from the disk tier through a few read buffers. Acquiring group g starts the reads of
// g+1 … g+prefetch (wrapping into the next step) into free buffers, so the disk works while g computes
// even when the program itself asks only on demand. A buffer keeps its group after release until it is
// reused, so a model whose groups all fit in the buffers is read once.
import type { StreamedWeight, WeightName } from '@zinfer/core';
import type { AlignedBuffer } from './disk-file.js';
import type { DiskRegion, DiskTier } from './disk-tier.js';
import { StreamBase } from './stream-base.js';

interface Slot {
  buf: AlignedBuffer;
  /** The group the buffer holds or is reading; -1 for none. */
  group: number;
  ready: Promise<StreamedWeight[]> | null;
  held: boolean;
}

export class DiskStream extends StreamBase {
  private readonly slots: Slot[];
  /** Loads waiting for a buffer to be released. */
  private readonly waiters: (() => void)[] = [];

  constructor(groups: readonly (readonly WeightName[])[], prefetch: number, private readonly tier: DiskTier, private readonly regions: readonly DiskRegion[], buffers: readonly AlignedBuffer[]) {
    super(groups, prefetch);
    this.slots = buffers.map((buf) => ({ buf, group: -1, ready: null, held: false }));
  }

  get bufferCount(): number {
    return this.slots.length;
  }

  protected async load(group: number): Promise<StreamedWeight[]> {
    const ahead = this.window(group);
    let slot = this.slots.find((s) => s.group === group);
    while (!slot) {
      // Every buffer is held: a program (the CUDA one releases a group once its copy has landed) may ask
      // for g + prefetch + 1 before that; wait for a release rather than fail.
      const free = this.victim(ahead, true);
      if (free) {
        slot = free;
        this.start(slot, group);
      } else {
        await new Promise<void>((resolve) => this.waiters.push(resolve));
        slot = this.slots.find((s) => s.group === group);
      }
    }
    slot.held = true;
    for (const g of ahead) {
      if (this.slots.some((s) => s.group === g)) continue;
      const free = this.victim(ahead, false);
      if (!free) break;
      this.start(free, g);
    }
    try {
      return await slot.ready!;
    } catch (e) {
      slot.held = false;
      throw e;
    }
  }

  protected unload(group: number): void {
    const slot = this.slots.find((s) => s.group === group && s.held);
    if (slot) slot.held = false;
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** The groups wanted next after `group`, nearest first. */
  private window(group: number): number[] {
    const n = this.groups.length;
    const out: number[] = [];
    for (let i = 1; i <= Math.min(this.prefetch, n - 1); i++) out.push((group + i) % n);
    return out;
  }

  /** A buffer to read into: empty first, then one holding no wanted group; with `evict`, else the farthest wanted. */
  private victim(ahead: readonly number[], evict: boolean): Slot | undefined {
    const free = this.slots.filter((s) => !s.held);
    const unwanted = free.find((s) => s.group < 0) ?? free.find((s) => !ahead.includes(s.group));
    if (unwanted || !evict) return unwanted;
    return free.sort((a, b) => ahead.indexOf(b.group) - ahead.indexOf(a.group))[0];
  }

  /** Starts reading `group` into the slot once its previous read (which may still run) has settled. */
  private start(slot: Slot, group: number): void {
    const previous = slot.ready;
    slot.group = group;
    slot.ready = (previous ?? Promise.resolve()).then(noop, noop).then(() => this.read(slot, group));
    slot.ready.catch(noop); // a failed prefetch surfaces when its group is acquired
  }

  private async read(slot: Slot, group: number): Promise<StreamedWeight[]> {
    const start = performance.now();
    try {
      const weights = await this.tier.readGroup(this.regions[group], slot.buf, group);
      this.recordFetch(group, start, performance.now());
      return weights;
    } catch (e) {
      if (slot.group === group) slot.group = -1; // read again on the next acquire
      throw e;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.ready?.then(noop, noop)));
  }
}

function noop(): void {}
