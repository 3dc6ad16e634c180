// One program's weight stream while it runs steps: which group to acquire when, into which slot, and
// when each group is loaded, computed and done. Group g lives in slot g mod (prefetch + 1). When g starts
// computing, groups up to g + prefetch are acquired (their slots' previous groups are done by then); the
// tensors that arrive are copied a chunk at a time while the workers run g's kernels (SlotCopies), so
// copies of the next groups overlap the current one's compute. Before g's first node, g is awaited and
// its remaining chunks written; it is released to the stream once copied.
import { BackendError, fetchGraphWeight, type Graph, type StreamedWeight, type WeightName } from '@zinfer/core';
import type { PlacedWeight } from './compile.js';
import type { WasmHeap } from './heap.js';
import { SlotCopies } from './slot-copies.js';
import type { StreamPlan } from './stream-plan.js';
import type { ThreadPool } from './thread-pool.js';

export class StreamRun {
  readonly copies: SlotCopies;
  /** Per group, resolved (never rejected) once its acquire settled; failures land in `failure`. */
  private readonly arrived: (Promise<void> | null)[];
  private readonly startedAt: Float64Array;
  private readonly held = new Set<number>();
  private nextAcquire = 0;
  private nextStart = 0;
  private done = 0;
  /** Highest group started (acquires run up to current + prefetch). */
  private current = 0;
  /** Acquires issued whose tensors have not arrived. */
  private inFlight = 0;
  private failure: unknown = null;

  constructor(private readonly plan: StreamPlan, private readonly graph: Graph, private readonly weights: ReadonlyMap<WeightName, PlacedWeight>, heap: WasmHeap, pool: ThreadPool) {
    const k = pool.kernel('k_pack_panels');
    const pack = (args: number, parallel: boolean) => pool.run(k, args, parallel);
    this.copies = new SlotCopies(heap, { staging: plan.staging, args: plan.packArgs, pack }, (g) => this.release(g));
    this.arrived = plan.groups.map(() => null);
    this.startedAt = new Float64Array(plan.groups.length);
  }

  /** A step starts: group 0 and the prefetched ones are acquired. */
  begin(): void {
    this.nextAcquire = this.nextStart = this.done = this.current = 0;
    this.pump();
  }

  /**
   * Before node i: loads the groups that start there; else, while acquires are in flight and nothing is
   * left to copy, yields to the event loop so their tensors can arrive. Null when there is nothing to wait for.
   */
  before(i: number): Promise<void> | null {
    if (this.failure) throw this.failure;
    if (this.nextStart < this.plan.first.length && this.plan.first[this.nextStart] === i) return this.start(i);
    if (this.inFlight > 0 && this.copies.pendingBytes === 0) return new Promise<void>((resolve) => setImmediate(resolve));
    return null;
  }

  /** After node i: the groups whose last node it was are done; their slots take the next groups. */
  after(i: number): void {
    const { last, stream } = this.plan;
    while (this.done < this.nextStart && last[this.done] <= i) {
      const g = this.done++;
      stream.recordCompute(g, this.startedAt[g], performance.now());
      this.pump();
    }
  }

  /** The step's nodes all ran. */
  end(): void {
    if (this.done !== this.plan.groups.length || this.held.size) throw new BackendError(`cpu weight stream: the step ended with ${this.plan.groups.length - this.done} groups not computed and ${this.held.size} held`);
  }

  /** A step failed: waits for acquires in flight and releases every group still held, so the next step starts clean. */
  async abort(): Promise<void> {
    await Promise.all(this.arrived.filter((p) => p !== null));
    this.copies.clear();
    for (const g of [...this.held]) this.release(g);
    this.arrived.fill(null);
    this.failure = null;
    this.inFlight = 0;
  }

  private async start(i: number): Promise<void> {
    const { first } = this.plan;
    while (this.nextStart < first.length && first[this.nextStart] === i) {
      const g = this.nextStart++;
      this.current = g;
      this.pump();
      await this.arrived[g]; // issued by pump: the compile-time span check keeps g's slot free by now
      if (this.failure) throw this.failure;
      this.copies.finish(g);
      this.startedAt[g] = performance.now();
    }
  }

  /** Issues acquires in group order, up to current + prefetch, each once its slot's previous group is done. */
  private pump(): void {
    const { groups, slots, stream } = this.plan;
    while (this.nextAcquire < groups.length && this.nextAcquire <= this.current + stream.prefetch && this.nextAcquire - slots.length < this.done) {
      const g = this.nextAcquire++;
      this.inFlight++;
      this.arrived[g] = stream.acquire(g).then(
        (tensors) => {
          this.inFlight--;
          this.held.add(g);
          try {
            this.arrive(g, tensors);
          } catch (e) {
            this.failure ??= e;
          }
        },
        (e: unknown) => {
          this.inFlight--;
          this.failure ??= e;
        },
      );
    }
  }

  /** Checks a group's tensors against the graph and the slot layout, points its weights at the slot, queues the copies. */
  private arrive(g: number, tensors: readonly StreamedWeight[]): void {
    const { groups, slots, dtype } = this.plan;
    const entries = groups[g];
    if (tensors.length !== entries.length) {
      throw new BackendError(`weight stream group ${g} gave ${tensors.length} tensors for its ${entries.length} weights`, { field: `stream.groups[${g}]`, expected: String(entries.length), found: String(tensors.length) });
    }
    const slot = slots[g % slots.length];
    const copies = entries.map((e, j) => {
      const w = tensors[j];
      if (w.name !== e.name) throw new BackendError(`weight stream group ${g} gave ${w.name} where ${e.name} comes (tensors in groups[${g}] order)`, { tensor: e.name, field: `stream.groups[${g}]`, expected: e.name, found: w.name });
      const t = fetchGraphWeight(this.graph, { names: () => [e.name], get: () => w.tensor }, e.name);
      if (t.dtype !== dtype) throw new BackendError(`streamed weight ${e.name} is ${t.dtype}; the program laid out its slots for ${dtype}, the dtype of its resident weights`, { tensor: e.name, expected: dtype, found: t.dtype });
      const placed = this.weights.get(e.name)!;
      placed.ptr = slot + e.offset;
      return { tensor: t, ptr: placed.ptr, packed: e.packed };
    });
    this.copies.add(g, copies);
  }

  private release(g: number): void {
    this.held.delete(g);
    this.plan.stream.release(g);
  }
}
