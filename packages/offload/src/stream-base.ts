// What every WeightStream of this package shares: the contract's acquire/release rules (a group is held
// once until released), and the fetch and compute timeline a bench reads to see the overlap achieved.
import { BackendError, type StreamEvent, type StreamedWeight, type WeightName, type WeightStream } from '@zinfer/core';

export abstract class StreamBase implements WeightStream {
  readonly events: StreamEvent[] = [];
  private readonly held = new Set<number>();

  constructor(readonly groups: readonly (readonly WeightName[])[], readonly prefetch: number) {}

  acquire(group: number): Promise<readonly StreamedWeight[]> {
    return this.holding(group, () => this.load(group));
  }

  /** Runs `fetch` for group g under the acquire/release rules (held once until released). */
  protected async holding<T>(group: number, fetch: () => Promise<T>): Promise<T> {
    if (!(Number.isInteger(group) && group >= 0 && group < this.groups.length)) {
      throw new BackendError(`acquire of stream group ${group}`, { field: 'group', expected: `0 … ${this.groups.length - 1}`, found: String(group) });
    }
    if (this.held.has(group)) throw new BackendError(`stream group ${group} acquired twice without a release`, { field: 'group', found: String(group) });
    this.held.add(group);
    try {
      return await fetch();
    } catch (e) {
      this.held.delete(group);
      throw e;
    }
  }

  release(group: number): void {
    if (!this.held.delete(group)) throw new BackendError(`release of stream group ${group}, which is not held`, { field: 'group', found: String(group) });
    this.unload(group);
  }

  recordCompute(group: number, start: number, end: number): void {
    this.events.push({ group, kind: 'compute', start, end });
  }

  protected recordFetch(group: number, start: number, end: number): void {
    this.events.push({ group, kind: 'fetch', start, end });
  }

  /** The group's tensors, valid until unload(group). */
  protected abstract load(group: number): Promise<StreamedWeight[]>;
  protected abstract unload(group: number): void;
  abstract close(): Promise<void>;
}
