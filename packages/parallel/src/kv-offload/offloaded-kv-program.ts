// A rank's program whose KV cache lives in host memory: the engine's whole block pool is a host store
// here, and the inner program (compiled with a small device cache) sees only the blocks of the
// micro-batch it runs, renumbered into its device blocks (kv-residency.ts decides where, step-blocks.ts
// renumbers).
//
// Double buffering: ranks learn of micro-batches before they run them (a worker's run messages arrive
// while it works through earlier ones; inline ranks get a step's micro-batches at once). prepare() notes
// each; while one micro-batch runs, the next one's blocks are placed and its copies issued, so they
// overlap the running one's compute. Placing it ahead keeps the running one's blocks; when both do not
// fit, the next is placed when it runs instead (no overlap for that pair, the same result). A step runs
// only once every copy issued before its placement has completed (the transfers' ordering rule:
// Program.kvBlocks): its own, and those of a micro-batch placed ahead that did not run as announced (a
// failed step, another batch object) — that one's blocks stay resident, so a later step may use them.
// A failed copy leaves blocks the residency map counts as valid without their KV: every later step fails.
import { BackendError, type KvBlockTransfer, type Program, type RunOptions, type SampleRow, type StepBatch } from '@zinfer/core';
import { KvResidency, type Placement } from './kv-residency.js';
import { stepBlocks, toDeviceBlocks, type StepBlocks } from './step-blocks.js';

/** Block copies of one rank, for tests and tools. */
export interface KvOffloadStats {
  deviceBlocks: number;
  hostBlocks: number;
  /** Blocks copied host → device, and their bytes. */
  loads: number;
  loadBytes: number;
  /** Blocks copied device → host, and their bytes. */
  saves: number;
  saveBytes: number;
  /** Micro-batches whose blocks were placed while another one ran (their copies overlapped it). */
  prepared: number;
}

interface Placed extends StepBlocks {
  batch: StepBatch;
  /** Its copies completed (a rejection is the copy's error). */
  moved: Promise<void>;
}

export class OffloadedKvProgram implements Program {
  private readonly residency: KvResidency;
  private store: ArrayBuffer | null;
  /** Micro-batches announced by prepare() and not yet run, in order. */
  private readonly announced: StepBatch[] = [];
  private running: StepBlocks | null = null;
  /** The next micro-batch, placed ahead. */
  private ahead: Placed | null = null;
  /** Copies not yet settled (each settles, never rejects): steps and dispose wait for those issued before them. */
  private readonly inFlight = new Set<Promise<void>>();
  /** The first copy that failed. */
  private copyError: unknown = null;
  readonly stats: KvOffloadStats;

  constructor(
    private readonly inner: Program,
    private readonly transfer: KvBlockTransfer,
    private readonly hostBlocks: number,
    deviceBlocks: number,
    private readonly blockSize: number,
  ) {
    this.residency = new KvResidency(deviceBlocks);
    this.store = transfer.allocHost(hostBlocks);
    this.stats = { deviceBlocks, hostBlocks, loads: 0, loadBytes: 0, saves: 0, saveBytes: 0, prepared: 0 };
  }

  get expertLoad(): Program['expertLoad'] {
    return this.inner.expertLoad && (() => this.inner.expertLoad!());
  }

  /** A micro-batch that run() will get later, after those announced before it. */
  prepare(batch: StepBatch): void {
    this.announced.push(batch);
    this.placeAhead();
  }

  run(batch: StepBatch, options?: RunOptions): Promise<Float32Array> {
    return this.step(batch, (b) => this.inner.run(b, options));
  }

  /** The inner program's device argmax, where it has one (ids only, as for a resident cache). */
  get runArgmax(): Program['runArgmax'] {
    const inner = this.inner;
    return inner.runArgmax && ((batch: StepBatch, options?: RunOptions) => this.step(batch, (b) => inner.runArgmax!(b, options)));
  }

  /** The inner program's run without its output, where it has one. */
  get runWithoutOutput(): Program['runWithoutOutput'] {
    const inner = this.inner;
    return inner.runWithoutOutput && ((batch: StepBatch, options?: RunOptions) => this.step(batch, (b) => inner.runWithoutOutput!(b, options)));
  }

  /** The inner program's device sampling, where it has it. */
  get runSample(): Program['runSample'] {
    const inner = this.inner;
    return inner.runSample && ((batch: StepBatch, rows: readonly SampleRow[], options?: RunOptions) => this.step(batch, (b) => inner.runSample!(b, rows, options)));
  }

  /** Places `batch`'s blocks, waits for their copies, and runs `exec` on the batch in device blocks. */
  private async step<T>(batch: StepBatch, exec: (deviceBatch: StepBatch) => Promise<T>): Promise<T> {
    if (this.running) throw new BackendError('an offloaded KV program runs one step at a time; await the previous run() first');
    const store = this.live();
    const i = this.announced.indexOf(batch);
    this.announced.splice(0, i + 1); // an unannounced batch (i = -1) leaves the queue as it is
    const use = stepBlocks(batch, this.blockSize, this.hostBlocks);
    this.running = use;
    try {
      // When nothing is known of the next micro-batch, one turn of the event loop lets its message in.
      if (this.announced.length === 0) await new Promise((r) => setImmediate(r));
      const placed = this.ahead?.batch === batch ? this.ahead : null;
      if (placed) this.ahead = null;
      const placement = this.placeRunning(use);
      const moved = this.move(store, placement);
      const before = Promise.all(this.inFlight); // this step's copies, and any an abandoned placement left
      this.placeAhead();
      await placed?.moved;
      await moved;
      await before;
      this.checkCopies();
      return await exec(toDeviceBlocks(batch, placement.device, this.blockSize));
    } catch (e) {
      // The micro-batches announced after a failed one will not come (the launcher stops the step).
      this.announced.length = 0;
      this.ahead = null;
      throw e;
    } finally {
      this.running = null;
    }
  }

  /**
   * The running micro-batch's blocks, keeping those of the one placed ahead if they can stay; if not, that
   * one gives way and is placed again when it runs.
   */
  private placeRunning(use: StepBlocks): Placement {
    const kept = this.ahead && this.residency.place(use.blocks, use.writes, this.ahead.blocks, use.fresh);
    if (kept) return kept;
    this.ahead = null;
    return this.residency.place(use.blocks, use.writes, undefined, use.fresh)!; // never null: every other block may go
  }

  async dispose(): Promise<void> {
    const store = this.store;
    this.store = null;
    await Promise.all(this.inFlight); // no copy may touch the store once it is freed
    this.ahead = null;
    try {
      if (store) this.transfer.freeHost(store);
    } finally {
      await this.inner.dispose();
    }
  }

  /** Places the first announced micro-batch that is not running, unless one is placed already or it does not fit beside the running one. */
  private placeAhead(): void {
    const store = this.store;
    const next = this.announced[0];
    if (this.ahead || !store || !next) return;
    let use: StepBlocks;
    let placement: Placement | null;
    try {
      use = stepBlocks(next, this.blockSize, this.hostBlocks);
      placement = this.residency.place(use.blocks, use.writes, this.running?.blocks, use.fresh);
    } catch {
      return; // run() reports it, for the micro-batch it concerns
    }
    if (!placement) return;
    const moved = this.move(store, placement);
    moved.catch(() => {}); // awaited by run(); a failure is reported there
    this.ahead = { batch: next, ...use, moved };
    if (this.running) this.stats.prepared++;
  }

  /** Issues a placement's saves, then its loads (a load may reuse a saved block's device block). */
  private move(store: ArrayBuffer, p: Placement): Promise<void> {
    const { blockBytes } = this.transfer;
    const copies: Promise<void>[] = [];
    if (p.saves.length) {
      copies.push(this.transfer.save(Int32Array.from(p.saves, (m) => m.device), store, Int32Array.from(p.saves, (m) => m.engine)));
      this.stats.saves += p.saves.length;
      this.stats.saveBytes += p.saves.length * blockBytes;
    }
    if (p.loads.length) {
      copies.push(this.transfer.load(Int32Array.from(p.loads, (m) => m.engine), store, Int32Array.from(p.loads, (m) => m.device)));
      this.stats.loads += p.loads.length;
      this.stats.loadBytes += p.loads.length * blockBytes;
    }
    const moved = Promise.all(copies).then(() => {});
    const settled: Promise<void> = moved.then(
      () => void this.inFlight.delete(settled),
      (e: unknown) => {
        this.copyError ??= e;
        this.inFlight.delete(settled);
      },
    );
    this.inFlight.add(settled);
    return moved;
  }

  private checkCopies(): void {
    if (this.copyError === null) return;
    const why = this.copyError instanceof Error ? this.copyError.message : String(this.copyError);
    throw new BackendError(`a KV-cache block copy failed (${why}); the offloaded cache no longer holds every block: launch the plan again`);
  }

  private live(): ArrayBuffer {
    if (!this.store) throw new BackendError('offloaded KV program was disposed; launch the plan again to run it');
    return this.store;
  }
}
