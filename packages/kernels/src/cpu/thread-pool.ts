// N threads over one shared memory: the calling (main) thread is thread 0, N − 1 worker_threads are the
// others. A dispatch splits a kernel into shares (kernel(args, share, shares)), writes (kernel, args) into a
// SharedArrayBuffer control block, publishes a claim word (shares, next share) and bumps the epoch; every
// thread, the main one included, then claims shares one at a time (an atomic add on the claim word) and
// runs them, until none is left; the main thread waits (spinning, then Atomics.wait) until every share
// is done. Which thread runs a share does not change its result (a share has its own scratch), so a
// worker that is late (asleep, or its core taken by another process) costs nothing: the others take its
// share. Dispatch is synchronous: a step blocks the main thread while it computes, as the reference does.
// A dispatch with background work (copies of streamed weights) leaves the kernel to the workers alone
// (N − 1 shares) while the main thread does that work until they finish.
import { BackendError } from '@zinfer/core';
import { Worker } from 'node:worker_threads';
import { requireWasm, type WasmMemory, type WasmModule } from './wasm-api.js';
import { WORKER_SOURCE } from './worker-source.js';

const EPOCH = 0;
const DONE = 1;
const KERNEL = 2;
const ARGS = 3;
const CLAIM = 4;
const ERROR = 5;
const READY = 6;
const STOP = 7;
const MESSAGE = 16;
/** The claim word: shares << CLAIM_SHIFT | next unclaimed share (over-claims run past it harmlessly). */
const CLAIM_SHIFT = 16;
/** Most threads a pool takes: the claim word's share count and index are 16-bit fields. */
export const MAX_POOL_THREADS = 4096;
const MESSAGE_BYTES = 1024;
const CONTROL_BYTES = MESSAGE * 4 + MESSAGE_BYTES;
/**
 * How long a thread polls before sleeping in Atomics.wait (whose wake-up takes ~20–50 µs). Workers poll
 * for the next kernel longer than the gap between two kernels of a step (the main thread's JavaScript
 * between them); the main thread polls for the workers briefly, since a balanced split finishes together.
 * Bounded in time, not iterations: on a machine whose cores are busy with other processes, a polling
 * thread takes CPU from the thread it waits for.
 */
export const DEFAULT_WORKER_SPIN_MS = 0.1;
const JOIN_SPIN_MS = 0.05;

type Kernel = (args: number, tid: number, nthreads: number) => void;

const isKernel = (f: unknown): f is Kernel => typeof f === 'function';

export class ThreadPool {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_BYTES));
  private readonly kernels: Kernel[];
  private workers: Worker[] = [];
  private starting: Promise<void> | null = null;
  private ready = false;
  private crashed: unknown = null;
  private closed = false;
  private readonly spinMs: { worker: number; join: number };

  constructor(
    private readonly module: WasmModule,
    private readonly memory: WasmMemory,
    private readonly names: readonly string[],
    /** Threads including the main one. */
    readonly threads: number,
    cores: number,
    /** How long an idle worker polls for the next kernel before sleeping (ms). */
    workerSpinMs = DEFAULT_WORKER_SPIN_MS,
  ) {
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > MAX_POOL_THREADS) throw new BackendError(`cpu thread pool: ${threads} threads (1 to ${MAX_POOL_THREADS})`, { field: 'threads', expected: `an integer from 1 to ${MAX_POOL_THREADS}`, found: String(threads) });
    const instance = new (requireWasm().Instance)(module, { env: { memory } });
    this.kernels = names.map((n) => {
      const f = instance.exports[n];
      if (!isKernel(f)) throw new BackendError(`the cpu kernel module's export ${n} is not a function; rebuild @zinfer/kernels`);
      return f;
    });
    // More threads than cores: a polling thread would take the core of one with work to do.
    this.spinMs = threads <= cores ? { worker: workerSpinMs, join: JOIN_SPIN_MS } : { worker: 0, join: 0 };
  }

  kernel(name: string): number {
    const k = this.names.indexOf(name);
    if (k < 0) throw new BackendError(`the cpu kernel module has no kernel ${name}; rebuild @zinfer/kernels`);
    return k;
  }

  /** Starts the workers (once); parallel dispatches need them. Resolves when every worker is ready. */
  start(): Promise<void> {
    if (this.threads === 1 || this.ready) return Promise.resolve();
    this.starting ??= this.spawn();
    return this.starting;
  }

  get parallel(): boolean {
    return this.ready;
  }

  private async spawn(): Promise<void> {
    const want = this.threads - 1;
    for (let t = 1; t <= want; t++) {
      const w = new Worker(WORKER_SOURCE, {
        eval: true,
        execArgv: [],
        workerData: { module: this.module, memory: this.memory, control: this.control.buffer, tid: t, names: this.names, spinMs: this.spinMs.worker },
      });
      w.unref(); // an undisposed program must not keep the process alive
      w.on('error', (e) => (this.crashed ??= e));
      w.on('exit', (code) => {
        if (!this.closed) this.crashed ??= new Error(`worker exited with code ${code}`);
      });
      this.workers.push(w);
    }
    // Polled rather than blocked on, so the event loop (and a worker's 'error' event) keeps running.
    while (Atomics.load(this.control, READY) < want) {
      if (this.crashed) throw new BackendError(`a cpu worker thread failed to start: ${String(this.crashed)}`);
      if (this.closed) return;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    this.throwIfFailed();
    this.ready = true;
  }

  /**
   * Runs kernel k over args on every thread (parallel and started) or on this thread alone. With
   * `background` (one unit of other work per call, false when none is left), a parallel kernel runs on
   * the workers only while this thread calls it until they are done.
   */
  run(k: number, args: number, parallel: boolean, background: (() => boolean) | null = null): void {
    if (this.closed) throw new BackendError('the cpu program was disposed; compile the graph again to run it');
    if (!parallel || !this.ready) {
      this.kernels[k](args, 0, 1);
      return;
    }
    const c = this.control;
    const shares = background ? this.threads - 1 : this.threads;
    c[KERNEL] = k;
    c[ARGS] = args;
    Atomics.store(c, DONE, 0);
    Atomics.store(c, CLAIM, shares << CLAIM_SHIFT);
    Atomics.add(c, EPOCH, 1);
    Atomics.notify(c, EPOCH);
    let failure: unknown = null;
    try {
      if (!background) this.claimShares(k, args);
      else while (Atomics.load(c, DONE) < shares) if (!background()) break;
    } catch (e) {
      failure = e;
    }
    this.join(shares);
    if (failure && background) throw failure; // the background work's own error, as it threw it
    if (failure) throw new BackendError(`cpu kernel ${this.names[k]} failed on the main thread: ${String(failure)}`);
    this.throwIfFailed();
  }

  /** Runs shares of the current dispatch on this thread until none is left unclaimed (the workers' loop). */
  private claimShares(k: number, args: number): void {
    const c = this.control;
    for (;;) {
      const w = Atomics.add(c, CLAIM, 1);
      const shares = w >>> CLAIM_SHIFT;
      const share = w & ((1 << CLAIM_SHIFT) - 1);
      if (share >= shares) return;
      try {
        this.kernels[k](args, share, shares);
      } finally {
        if (Atomics.add(c, DONE, 1) + 1 === shares) Atomics.notify(c, DONE);
      }
    }
  }

  /** Waits until every share of the current dispatch is done, whichever threads ran them. */
  private join(shares: number): void {
    const c = this.control;
    let d = Atomics.load(c, DONE);
    if (d !== shares && this.spinMs.join > 0) {
      const until = performance.now() + this.spinMs.join;
      for (let i = 1; d !== shares; i++) {
        d = Atomics.load(c, DONE);
        if ((i & 127) === 0 && performance.now() > until) break;
      }
    }
    while (d !== shares) {
      Atomics.wait(c, DONE, d);
      d = Atomics.load(c, DONE);
    }
  }

  private throwIfFailed(): void {
    const who = Atomics.load(this.control, ERROR);
    if (who === 0) return;
    const bytes = new Uint8Array(this.control.buffer, MESSAGE * 4, MESSAGE_BYTES);
    const end = bytes.indexOf(0);
    const message = new TextDecoder().decode(bytes.slice(0, end < 0 ? MESSAGE_BYTES : end));
    throw new BackendError(`cpu worker thread ${who - 1} failed: ${message}`);
  }

  /** Stops and terminates the workers; the pool cannot run afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.starting) await this.starting.catch(() => {});
    const c = this.control;
    Atomics.store(c, STOP, 1);
    Atomics.add(c, EPOCH, 1);
    Atomics.notify(c, EPOCH);
    // ref() while terminating: an unref()ed worker's exit would not keep the event loop (and so the
    // caller awaiting dispose()) alive.
    await Promise.all(this.workers.map((w) => (w.ref(), w.terminate())));
    this.workers = [];
  }
}
