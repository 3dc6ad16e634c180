// Weight streaming needs a second stream: host → device copies of the next layers run on it while the
// compute stream runs the current one. Events order the two (a layer's kernels wait for its copy; a copy
// into a slot waits for the kernels that read the slot's previous layer) and time them for the timeline.
// CudaCopyEngine implements it on the driver; recording-copies.ts records it for tests without a GPU.
import { BackendError } from '@zinfer/core';
import type { CudaDriver } from './driver.js';
import { CU, type Ptr } from './driver-api.js';

/** An event (opaque handle); `record` marks a point in a queue, `wait` makes the other queue wait for it. */
export interface GpuEvent {
  readonly handle: bigint;
}

/**
 * The program's compute stream, the copy stream of its streamed weights, or the gather stream of a
 * cooperative fetch (its all-gathers run there, so the next group's host → device copy overlaps them).
 */
export type Queue = 'compute' | 'copy' | 'gather';

export interface CopyEngine {
  /**
   * Host → device on the copy stream from page-locked memory at host address `src`, asynchronously: the
   * source must stay unchanged until an event recorded on the copy queue after it has completed.
   */
  copy(dst: bigint, src: bigint, bytes: number): void;
  /**
   * Device → host on the copy stream into page-locked memory at host address `dst`, asynchronously (KV
   * blocks saved to host memory): the bytes are there once an event recorded on the copy queue after it
   * has completed.
   */
  copyToHost(dst: bigint, src: bigint, bytes: number): void;
  event(): GpuEvent;
  /** Marks the point after everything enqueued on `queue` so far. */
  record(event: GpuEvent, queue: Queue): void;
  /** Work enqueued on `queue` from now on starts after the event's last recorded point. */
  wait(queue: Queue, event: GpuEvent): void;
  /** Whether the work before the event's last record has finished (never blocks; a failed copy throws). */
  done(event: GpuEvent): boolean;
  /** Milliseconds between two completed events (of either queue). */
  elapsedMs(from: GpuEvent, to: GpuEvent): number;
  destroyEvent(event: GpuEvent): void;
  /** The queue's stream handle (CUstream), for device collectives enqueued on it. */
  streamHandle(queue: Queue): bigint;
  /** Waits for the copy queue and destroys it. */
  dispose(): void;
}

type StreamingApi = Required<Pick<CudaDriver['api'], 'cuStreamWaitEvent' | 'cuEventQuery'>>;

/** The driver functions streaming needs, or an error naming the one this driver lacks. */
export function streamingApi(driver: CudaDriver): StreamingApi {
  const { cuStreamWaitEvent, cuEventQuery } = driver.api;
  if (!cuStreamWaitEvent || !cuEventQuery) {
    throw new BackendError(`the CUDA driver ${driver.path} lacks ${cuStreamWaitEvent ? 'cuEventQuery' : 'cuStreamWaitEvent'}, which weight streaming needs`, { file: driver.path });
  }
  return { cuStreamWaitEvent, cuEventQuery };
}

export class CudaCopyEngine implements CopyEngine {
  private readonly copyStream: Ptr;
  private readonly api: StreamingApi;
  private readonly events = new Set<bigint>();
  private gatherStream: Ptr | null = null;

  constructor(private readonly driver: CudaDriver, private readonly computeStream: Ptr) {
    this.api = streamingApi(driver);
    const s: [Ptr | null] = [null];
    driver.check('cuStreamCreate', driver.api.cuStreamCreate(s, CU.STREAM_NON_BLOCKING), 'the weight copy stream');
    this.copyStream = s[0]!;
  }

  private streamOf(queue: Queue): Ptr {
    if (queue === 'gather') return (this.gatherStream ??= this.newStream('the cooperative fetch gather stream'));
    return queue === 'copy' ? this.copyStream : this.computeStream;
  }

  private newStream(what: string): Ptr {
    const s: [Ptr | null] = [null];
    this.driver.check('cuStreamCreate', this.driver.api.cuStreamCreate(s, CU.STREAM_NON_BLOCKING), what);
    return s[0]!;
  }

  streamHandle(queue: Queue): bigint {
    return this.streamOf(queue);
  }

  copy(dst: bigint, src: bigint, bytes: number): void {
    this.driver.check('cuMemcpyHtoDAsync_v2', this.driver.api.cuMemcpyHtoDAsync_v2(dst, src, bytes, this.copyStream), `${bytes} streamed weight bytes`);
  }

  copyToHost(dst: bigint, src: bigint, bytes: number): void {
    this.driver.check('cuMemcpyDtoHAsync_v2', this.driver.api.cuMemcpyDtoHAsync_v2(dst, src, bytes, this.copyStream), `${bytes} KV-cache bytes to host memory`);
  }

  event(): GpuEvent {
    const e: [Ptr | null] = [null];
    this.driver.check('cuEventCreate', this.driver.api.cuEventCreate(e, CU.EVENT_DEFAULT));
    this.events.add(e[0]!);
    return { handle: e[0]! };
  }

  record(event: GpuEvent, queue: Queue): void {
    this.driver.check('cuEventRecord', this.driver.api.cuEventRecord(event.handle, this.streamOf(queue)), `on the ${queue} stream`);
  }

  wait(queue: Queue, event: GpuEvent): void {
    this.driver.check('cuStreamWaitEvent', this.api.cuStreamWaitEvent(this.streamOf(queue), event.handle, 0), `the ${queue} stream`);
  }

  done(event: GpuEvent): boolean {
    const status = this.api.cuEventQuery(event.handle);
    if (status === CU.ERROR_NOT_READY) return false;
    this.driver.check('cuEventQuery', status, 'a streamed weight copy or the kernels before it failed');
    return true;
  }

  elapsedMs(from: GpuEvent, to: GpuEvent): number {
    const ms: [number] = [0];
    this.driver.check('cuEventElapsedTime', this.driver.api.cuEventElapsedTime(ms, from.handle, to.handle));
    return ms[0];
  }

  destroyEvent(event: GpuEvent): void {
    if (!this.events.delete(event.handle)) return;
    this.driver.check('cuEventDestroy_v2', this.driver.api.cuEventDestroy_v2(event.handle));
  }

  dispose(): void {
    for (const [stream, what] of [[this.copyStream, 'the weight copy stream'], [this.gatherStream, 'the gather stream']] as const) {
      if (stream) this.driver.check('cuStreamSynchronize', this.driver.api.cuStreamSynchronize(stream), what);
    }
    for (const e of this.events) this.driver.api.cuEventDestroy_v2(e);
    this.events.clear();
    this.driver.check('cuStreamDestroy_v2', this.driver.api.cuStreamDestroy_v2(this.copyStream));
    if (this.gatherStream) this.driver.check('cuStreamDestroy_v2', this.driver.api.cuStreamDestroy_v2(this.gatherStream));
    this.gatherStream = null;
  }
}

/** Resolves once `event` has completed, polling without blocking the event loop (tiers read files meanwhile). */
export async function eventDone(copies: CopyEngine, event: GpuEvent): Promise<void> {
  for (let spins = 0; !copies.done(event); spins++) {
    await new Promise((r) => (spins < 64 ? setImmediate(r) : setTimeout(r, 1)));
  }
}
