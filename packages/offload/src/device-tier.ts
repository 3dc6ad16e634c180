// The device tier: weights the compute device holds for the whole run, counted against its byte budget.
// place() parks the resident weights here until the backend's compile takes them (then they are the
// backend's: taking a weight releases it from the tier, so place() keeps no second copy alive).
import { CapacityError, type HostTensor, type OffloadTier, type WeightName } from '@zinfer/core';

export class DeviceTier implements OffloadTier {
  readonly name = 'device';
  readonly level = 'device' as const;
  private readonly held = new Map<WeightName, HostTensor>();
  private used = 0;

  constructor(readonly capacityBytes: number) {}

  get usedBytes(): number {
    return this.used;
  }

  has(name: WeightName): boolean {
    return this.held.has(name);
  }

  async put(name: WeightName, tensor: HostTensor): Promise<void> {
    this.hold(name, tensor);
  }

  /** put() without the promise, for place()'s synchronous hand-over. */
  hold(name: WeightName, tensor: HostTensor): void {
    const bytes = tensor.data.byteLength;
    if (this.used + bytes > this.capacityBytes) {
      throw new CapacityError('the device budget is full', { field: 'offload.deviceMemory', tensor: name, expected: `at most ${this.capacityBytes} bytes (raise --device-memory)`, found: `${this.used + bytes} bytes` });
    }
    this.release(name);
    this.held.set(name, tensor);
    this.used += bytes;
  }

  async fetch(name: WeightName): Promise<HostTensor> {
    return this.take(name, false);
  }

  /** The weight; with `release`, the tier forgets it (the caller owns it now). */
  take(name: WeightName, release: boolean): HostTensor {
    const t = this.held.get(name);
    if (!t) throw new CapacityError('the device tier does not hold this weight', { field: 'offload', tensor: name });
    if (release) this.forget(name);
    return t;
  }

  async release(name: WeightName): Promise<void> {
    this.forget(name);
  }

  private forget(name: WeightName): void {
    const t = this.held.get(name);
    if (t) this.used -= t.data.byteLength;
    this.held.delete(name);
  }
}
