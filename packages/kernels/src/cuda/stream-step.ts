// One step of a streamed program. Groups are fetched in step order, `slots` of them in flight: at the start
// the first `slots` groups, then each time a group's last reader is enqueued, the group that reuses its
// slot. A fetch acquires the group from the stream, makes the copy stream wait for the compute stream's
// "slot free" event of the slot's previous group, enqueues the group's copies (straight from pinned memory;
// through the slot's pinned staging buffer for pageable tensors or a dtype conversion) and records "copy
// done"; the compute stream waits on that before the group's first reader. The group is released to the
// stream once its copy completed (polled, so tiers keep reading files meanwhile).
import { BackendError, fromF32, isFloatDType, shapeString, toF32, type StreamEvent, type StreamedWeight, type WeightName } from '@zinfer/core';
import { eventDone } from './copy-engine.js';
import { enqueueShard } from './shard-fetch.js';
import type { DeviceWeight } from './device-weights.js';
import type { StreamedWeights } from './streamed-weights.js';

interface Fetch {
  /** The group's copies are enqueued (the compute stream may wait on them). */
  enqueued: Promise<void>;
  /** The copy completed and the group was released to the stream. */
  released: Promise<void>;
}

export class StreamStep {
  private readonly fetches = new Map<number, Fetch>();
  private readonly onDevice = new Map<WeightName, DeviceWeight>();
  private issued = 0;
  private t0 = 0;

  constructor(private readonly s: StreamedWeights) {}

  /** Marks the step's time origin and starts the first fetches. */
  start(): void {
    this.s.copies.record(this.s.anchor(), 'compute');
    this.t0 = performance.now();
    for (let k = 0; k < this.s.plan.slots; k++) this.issue();
  }

  /** Before node i: its groups' copies are enqueued and the compute stream waits for them. */
  async before(i: number): Promise<void> {
    for (const g of this.s.plan.opensAt.get(i) ?? []) {
      const f = this.fetches.get(g);
      if (!f) throw new BackendError(`stream group ${g} is needed at node ${i} but was not fetched`);
      await f.enqueued;
      const ev = this.s.eventsOf(g);
      this.s.copies.wait('compute', ev.copyEnd);
      this.s.copies.record(ev.computeStart, 'compute');
    }
  }

  /** After node i: the slots of groups it finished are free (event), and the next groups are fetched into them. */
  after(i: number): void {
    for (const g of this.s.plan.closesAt.get(i) ?? []) {
      this.s.copies.record(this.s.eventsOf(g).computeEnd, 'compute');
      for (const name of this.s.plan.groups[g].layout.keys()) this.onDevice.delete(name);
      this.issue();
    }
  }

  /** A streamed weight whose group is on the device now. */
  weight(name: WeightName): DeviceWeight | undefined {
    return this.onDevice.get(name);
  }

  /**
   * After the compute stream was synchronized: waits for every release, reports each group's compute to
   * the stream and keeps the copy and compute timeline (device event times on performance.now()'s clock).
   */
  async finish(): Promise<void> {
    await this.settle(true);
    const { copies, plan } = this.s;
    const anchor = this.s.anchor();
    const at = (e: Parameters<typeof copies.elapsedMs>[1]) => this.t0 + copies.elapsedMs(anchor, e);
    const timeline: StreamEvent[] = [];
    const shard = this.s.stream.shard !== undefined;
    [this.s.stats.shardCopyMs, this.s.stats.gatherMs] = [0, 0];
    for (const g of plan.order.slice(0, this.issued)) {
      const ev = this.s.eventsOf(g);
      if (shard) {
        this.s.stats.shardCopyMs += copies.elapsedMs(ev.copyStart, ev.shareEnd);
        this.s.stats.gatherMs += copies.elapsedMs(ev.shareEnd, ev.copyEnd);
      }
      timeline.push({ group: g, kind: 'fetch', start: at(ev.copyStart), end: at(ev.copyEnd) });
      const compute: StreamEvent = { group: g, kind: 'compute', start: at(ev.computeStart), end: at(ev.computeEnd) };
      timeline.push(compute);
      this.s.stream.recordCompute(g, compute.start, compute.end);
    }
    this.s.stats.timeline = timeline;
  }

  /** Waits for every fetch to settle; rethrows the first failure when `rethrow`. After a failed launch: settle(false). */
  async settle(rethrow: boolean): Promise<void> {
    const results = await Promise.allSettled([...this.fetches.values()].map((f) => f.released));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed && rethrow) throw failed.reason;
  }

  /** Starts fetching the next group of the step, if any. */
  private issue(): void {
    const { order, slots } = this.s.plan;
    if (this.issued >= order.length) return;
    const g = order[this.issued];
    const prev = this.issued >= slots ? order[this.issued - slots] : undefined;
    this.issued++;
    const shard = this.s.stream.shard;
    // Now, so acquires come in group order; a cooperative fetch takes the rank's share and gathers the rest.
    const acquired: Promise<readonly StreamedWeight[] | Uint8Array> = shard ? shard.acquireShare(g) : this.s.stream.acquire(g);
    let signal: (error?: unknown) => void = () => {};
    const enqueued = new Promise<void>((resolve, reject) => (signal = (e) => (e === undefined ? resolve() : reject(e))));
    const released = (async () => {
      const tensors = await acquired.catch((e: unknown) => {
        signal(e);
        throw e;
      });
      try {
        if (prev !== undefined) await this.fetches.get(prev)!.released; // its copy read the slot's staging
        if (tensors instanceof Uint8Array) enqueueShard(this.s, g, tensors, prev, this.onDevice);
        else this.enqueueCopies(g, tensors, prev);
        signal();
        await eventDone(this.s.copies, this.s.eventsOf(g).copyEnd);
      } catch (e) {
        signal(e);
        throw e;
      } finally {
        this.s.stream.release(g);
      }
    })();
    enqueued.catch(() => {}); // awaited by before() when needed; settle() reports the failure
    released.catch(() => {});
    this.fetches.set(g, { enqueued, released });
  }

  private enqueueCopies(g: number, tensors: readonly StreamedWeight[], prev: number | undefined): void {
    const { plan, copies, host, slotPtrs, stats } = this.s;
    const group = plan.groups[g];
    const slot = slotPtrs[group.slot];
    if (tensors.length !== group.layout.size) {
      throw new BackendError(`stream group ${g} gave ${tensors.length} tensors, the graph streams ${group.layout.size} in it`, { field: 'stream.groups', expected: String(group.layout.size), found: String(tensors.length) });
    }
    const ev = this.s.eventsOf(g);
    if (prev !== undefined) copies.wait('copy', this.s.eventsOf(prev).computeEnd);
    copies.record(ev.copyStart, 'copy');
    for (const { name, tensor } of tensors) {
      const e = group.layout.get(name);
      if (!e) throw new BackendError(`stream group ${g} gave weight ${name}, which is not in the group`, { tensor: name });
      if (!isFloatDType(tensor.dtype) || shapeString(tensor.shape) !== shapeString(e.shape)) {
        throw new BackendError(`streamed weight ${name} is ${tensor.dtype} ${shapeString(tensor.shape)}, the graph says ${shapeString(e.shape)}`, { tensor: name, expected: shapeString(e.shape), found: shapeString(tensor.shape) });
      }
      const dst = slot + BigInt(e.offset);
      const pinned = tensor.dtype === e.dtype ? host.address(tensor.data) : null;
      if (pinned !== null) {
        copies.copy(dst, pinned, e.bytes);
      } else {
        const staging = this.s.stagingFor(group.slot);
        const data = tensor.dtype === e.dtype ? tensor.data : fromF32(e.dtype, toF32(tensor.dtype, tensor.data));
        new Uint8Array(staging.buffer, e.offset, e.bytes).set(new Uint8Array(data.buffer, data.byteOffset, e.bytes));
        copies.copy(dst, staging.ptr + BigInt(e.offset), e.bytes);
        stats.stagedBytes += e.bytes;
      }
      stats.copiedBytes += e.bytes;
      this.onDevice.set(name, { ptr: dst, dtype: e.dtype, shape: e.shape, bytes: e.bytes });
    }
    copies.record(ev.copyEnd, 'copy');
  }
}
