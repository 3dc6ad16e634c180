// What place() needs from a tier while it fills it: take each layer group once (in step order), then,
// once the plan says which leading layers stay on the device, keep the rest and stream them.
import type { HostTensor, StreamedWeight, WeightName } from '@zinfer/core';
import type { Plan } from './placement-plan.js';
import type { StreamBase } from './stream-base.js';

export interface Staged {
  /** The stream of the layers that left the device, or null when all stayed. */
  stream: StreamBase | null;
  /** A resident layer weight that the tier still has (read back or kept), or undefined. */
  residentWeight(name: WeightName): HostTensor | undefined;
  /** The disk tier's file, or null. */
  file: string | null;
  /** The tier's summary line. */
  line: string;
  close(): Promise<void>;
}

export interface Staging {
  /** Takes one layer group (the next in step order). */
  add(weights: StreamedWeight[]): Promise<void>;
  finish(plan: Plan): Promise<Staged>;
  /** Undoes what was written (place() failed). */
  abort(): Promise<void>;
}

export interface StagingOptions {
  prefetch: number;
  /** Read buffers of the disk stream (≥ prefetch + 1). */
  buffers: number;
  hostMemory: number | undefined;
  dir: string | undefined;
  directIo: boolean;
  /** Host memory to copy from (the backend's allocHost when it has one). */
  alloc: (bytes: number) => ArrayBuffer;
  pinned: boolean;
}
