// The copy engine of the RecordingGpu: copies, event records and waits are logged in one list together with
// how many kernel launches the Gpu had recorded at that moment, so tests can replay the two streams' order
// (which launch comes after which copy, through which event). Copies are checked like launches: the device
// range inside a live allocation, the host range inside a live (fake) pinned block, whose bytes at that
// moment are kept with the copy (what the device would hold). Pinned blocks are plain ArrayBuffers with
// made-up addresses.
import { BackendError } from '@zinfer/core';
import type { CopyEngine, GpuEvent, Queue } from './copy-engine.js';
import type { PinnedAllocator } from './host-memory.js';
import type { RecordingGpu } from './recording-gpu.js';

export type CopyOp =
  /** Host → device, or with `toHost` device → host (then `data` is empty: the recorder holds no device bytes). */
  | { op: 'copy'; dst: bigint; src: bigint; bytes: number; launches: number; data: Uint8Array; toHost?: true }
  | { op: 'record' | 'wait'; queue: Queue; event: bigint; launches: number };

export class RecordingCopies implements CopyEngine {
  readonly log: CopyOp[] = [];
  /** Fake page-locked memory: blocks by address. */
  readonly pinned: PinnedAllocator & { live: Map<bigint, ArrayBuffer> };
  /** Polls of each event that answer "not yet" before it completes (tests of the polling path). */
  pollsBeforeDone = 0;
  liveEvents = 0;
  disposed = false;
  private nextEvent = 1n;
  private readonly polls = new Map<bigint, number>();

  constructor(private readonly gpu: RecordingGpu) {
    let next = 0x100000000000n;
    const live = new Map<bigint, ArrayBuffer>();
    this.pinned = {
      live,
      alloc(bytes) {
        const ptr = next;
        next += BigInt(Math.ceil(bytes / 4096) * 4096 + 4096);
        const buffer = new ArrayBuffer(bytes);
        live.set(ptr, buffer);
        return { buffer, ptr };
      },
      free(ptr) {
        if (!live.delete(ptr)) throw new BackendError(`free of pinned 0x${ptr.toString(16)}, which is not live`);
      },
    };
  }

  copy(dst: bigint, src: bigint, bytes: number): void {
    const room = this.gpu.extent(dst);
    if (bytes > room) throw new BackendError(`copy of ${bytes} bytes to 0x${dst.toString(16)} overruns its allocation (${room} bytes left)`);
    const block = this.pinnedBlock(src, bytes);
    if (!block) throw new BackendError(`copy from host 0x${src.toString(16)} (${bytes} bytes): not inside a live pinned block`);
    const data = new Uint8Array(block[1], Number(src - block[0]), bytes).slice();
    this.log.push({ op: 'copy', dst, src, bytes, launches: this.gpu.launches.length, data });
  }

  copyToHost(dst: bigint, src: bigint, bytes: number): void {
    const room = this.gpu.extent(src);
    if (bytes > room) throw new BackendError(`copy of ${bytes} bytes from 0x${src.toString(16)} overruns its allocation (${room} bytes left)`);
    if (!this.pinnedBlock(dst, bytes)) throw new BackendError(`copy to host 0x${dst.toString(16)} (${bytes} bytes): not inside a live pinned block`);
    this.log.push({ op: 'copy', dst, src, bytes, launches: this.gpu.launches.length, data: new Uint8Array(0), toHost: true });
  }

  private pinnedBlock(at: bigint, bytes: number): [bigint, ArrayBuffer] | undefined {
    return [...this.pinned.live].find(([base, b]) => at >= base && at + BigInt(bytes) <= base + BigInt(b.byteLength));
  }

  event(): GpuEvent {
    this.liveEvents++;
    return { handle: this.nextEvent++ };
  }

  record(event: GpuEvent, queue: Queue): void {
    this.log.push({ op: 'record', queue, event: event.handle, launches: this.gpu.launches.length });
    this.polls.set(event.handle, this.pollsBeforeDone);
  }

  wait(queue: Queue, event: GpuEvent): void {
    if (!this.log.some((o) => o.op === 'record' && o.event === event.handle)) throw new BackendError(`wait on event ${event.handle}, which was never recorded`);
    this.log.push({ op: 'wait', queue, event: event.handle, launches: this.gpu.launches.length });
  }

  done(event: GpuEvent): boolean {
    const left = this.polls.get(event.handle) ?? 0;
    this.polls.set(event.handle, left - 1);
    return left <= 0;
  }

  /** A made-up duration: the distance between the events' last records in the log, 0.01 ms per entry. */
  elapsedMs(from: GpuEvent, to: GpuEvent): number {
    const at = (e: GpuEvent) => {
      for (let i = this.log.length - 1; i >= 0; i--) {
        const o = this.log[i];
        if (o.op === 'record' && o.event === e.handle) return i;
      }
      throw new BackendError(`elapsed time of event ${e.handle}, which was never recorded`);
    };
    return (at(to) - at(from)) * 0.01;
  }

  /** Made-up stream handles: 1 compute, 2 copy, 3 gather. */
  streamHandle(queue: Queue): bigint {
    return queue === 'compute' ? 1n : queue === 'copy' ? 2n : 3n;
  }

  destroyEvent(_event: GpuEvent): void {
    this.liveEvents--;
  }

  dispose(): void {
    this.disposed = true;
  }
}
