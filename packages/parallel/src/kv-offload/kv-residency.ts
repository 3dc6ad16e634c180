// Which of the engine's KV-cache blocks sit in a rank's small device cache, and where. Pure bookkeeping
// (no backend): the offloaded program asks for the blocks of a micro-batch and gets their device blocks
// plus the copies that make them valid there, in order: first the saves of evicted blocks (device → host:
// their contents are live KV), then the loads of the newly placed ones (host → device).
//
// Eviction takes the least recently used resident blocks, never one the micro-batch itself needs nor one
// the caller keeps (the micro-batch that is running, or the one prepared next). Two facts skip copies that
// cannot matter: a block is saved only when a step wrote it since it was placed (dirty), and loaded only
// when its host copy holds something (it was saved once). A block never saved was never written on this
// rank (written blocks stay resident until an eviction saves them), so none of its tokens can be read.
// And a block the micro-batch uses only from its first token on (`fresh`: the engine freed its earlier
// owner and handed the id to a new sequence) is not loaded either: its host copy is the old owner's.
import { ConfigError } from '@zinfer/core';

/** One block copy: engine (= host store) block and device block. */
export interface BlockMove {
  engine: number;
  device: number;
}

export interface Placement {
  /** Device block of every block asked for. */
  device: Map<number, number>;
  /** Device → host, before `loads` (a load may reuse an evicted block's device block). */
  saves: BlockMove[];
  /** Host → device. */
  loads: BlockMove[];
}

export const DEVICE_BLOCKS_FIELD = 'parallel.kvOffload.deviceBlocks';

export class KvResidency {
  /** Resident engine block → device block; Map order is recency (least recently used first). */
  private readonly resident = new Map<number, number>();
  private readonly free: number[];
  /** Resident blocks a step wrote since they were placed. */
  private readonly dirty = new Set<number>();
  /** Blocks whose host copy holds their KV (saved at least once). */
  private readonly onHost = new Set<number>();

  constructor(readonly deviceBlocks: number) {
    this.free = Array.from({ length: deviceBlocks }, (_, i) => deviceBlocks - 1 - i); // pop() hands out 0 first
  }

  /** Device block of a resident engine block. */
  deviceOf(block: number): number | undefined {
    return this.resident.get(block);
  }

  get residentCount(): number {
    return this.resident.size;
  }

  /**
   * Places `blocks` (a micro-batch's, `writes` among them: the blocks its step writes; `fresh`: those that
   * hold none of its tokens yet), evicting least
   * recently used blocks outside `blocks` and `keep`. Null, with nothing changed, when too few blocks can
   * be evicted; a micro-batch larger than the whole device cache is a ConfigError naming the field.
   */
  place(blocks: ReadonlySet<number>, writes: ReadonlySet<number>, keep: ReadonlySet<number> = new Set(), fresh: ReadonlySet<number> = new Set()): Placement | null {
    if (blocks.size > this.deviceBlocks) {
      throw new ConfigError(`a micro-batch uses ${blocks.size} KV-cache blocks, more than the ${this.deviceBlocks} of the device cache`, {
        field: DEVICE_BLOCKS_FIELD, expected: `at least ${blocks.size} blocks (one micro-batch's; two let the next one load while one runs)`, found: String(this.deviceBlocks),
      });
    }
    const missing = [...blocks].filter((b) => !this.resident.has(b));
    const victims = this.victims(missing.length - this.free.length, blocks, keep);
    if (!victims) return null;
    const saves: BlockMove[] = [];
    for (const engine of victims) {
      const device = this.resident.get(engine)!;
      this.resident.delete(engine);
      if (this.dirty.delete(engine)) {
        saves.push({ engine, device });
        this.onHost.add(engine);
      }
      this.free.push(device);
    }
    const loads: BlockMove[] = [];
    for (const engine of missing) {
      const device = this.free.pop()!;
      this.resident.set(engine, device);
      if (fresh.has(engine)) this.onHost.delete(engine);
      else if (this.onHost.has(engine)) loads.push({ engine, device });
    }
    const device = new Map<number, number>();
    for (const b of blocks) {
      const d = this.resident.get(b)!;
      this.resident.delete(b); // re-inserted: most recently used
      this.resident.set(b, d);
      device.set(b, d);
    }
    for (const b of writes) if (blocks.has(b)) this.dirty.add(b);
    return { device, saves, loads };
  }

  /** `count` least recently used blocks that may go, or null when fewer exist. */
  private victims(count: number, blocks: ReadonlySet<number>, keep: ReadonlySet<number>): number[] | null {
    const out: number[] = [];
    if (count <= 0) return out;
    for (const b of this.resident.keys()) {
      if (blocks.has(b) || keep.has(b)) continue;
      out.push(b);
      if (out.length === count) return out;
    }
    return null;
  }
}
