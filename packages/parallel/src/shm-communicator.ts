// The CPU communicator: collectives between ranks of one process (worker threads, or several ranks on
// one thread) through SharedArrayBuffers and Atomics. Every rank reduces in rank order, so all ranks get
// bit-identical results, which keeps tensor-parallel greedy output identical to the plain run.
import { BackendError, type Communicator } from '@zinfer/core';

/** The shared state of a group; plain data, so it can be posted to worker threads. */
export interface ShmGroup {
  size: number;
  /** Floats per rank slot: collectives larger than this run in chunks (allReduce) or are refused. */
  slotFloats: number;
  /** [size * slotFloats] float32: one slot per rank. */
  data: SharedArrayBuffer;
  /** Int32 control words: barrier counter, barrier generation, then per-pair mailbox flags and counts. */
  control: SharedArrayBuffer;
  /** [size * size] float32 slots of slotFloats for point-to-point send/recv. */
  mail: SharedArrayBuffer;
  /** How long a rank waits for its peers before it reports them dead or hung. */
  timeoutMs: number;
}

const COUNT = 0;
const GENERATION = 1;
/** Set by close() on any rank: every rank's pending and later collectives fail at once. */
const CLOSED = 2;
const HEADER = 3;

export function createShmGroup(size: number, opts: { slotBytes?: number; timeoutMs?: number } = {}): ShmGroup {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`group size must be a positive integer, found ${size}`);
  const slotFloats = Math.floor((opts.slotBytes ?? 8 * 2 ** 20) / 4);
  return {
    size,
    slotFloats,
    data: new SharedArrayBuffer(size * slotFloats * 4),
    // Barrier words, then per (src, dst) pair: a full flag and a length, then per rank an allToAll count row.
    control: new SharedArrayBuffer((HEADER + 2 * size * size + size * size) * 4),
    mail: new SharedArrayBuffer(size * size * slotFloats * 4),
    timeoutMs: opts.timeoutMs ?? 30_000,
  };
}

export function shmCommunicator(group: ShmGroup, rank: number): Communicator {
  return new ShmCommunicator(group, rank);
}

class ShmCommunicator implements Communicator {
  readonly size: number;
  private readonly ctl: Int32Array;
  private readonly slots: Float32Array;
  private readonly mail: Float32Array;

  constructor(private readonly group: ShmGroup, readonly rank: number) {
    if (!Number.isInteger(rank) || rank < 0 || rank >= group.size) throw new RangeError(`rank ${rank} outside group of ${group.size}`);
    this.size = group.size;
    this.ctl = new Int32Array(group.control);
    this.slots = new Float32Array(group.data);
    this.mail = new Float32Array(group.mail);
  }

  async allReduce(buf: Float32Array, op: 'sum' | 'max' = 'sum'): Promise<void> {
    const n = this.group.slotFloats;
    for (let start = 0; start < buf.length; start += n) {
      const part = buf.subarray(start, Math.min(buf.length, start + n));
      this.slot(this.rank).set(part);
      await this.barrier();
      part.set(this.slot(0).subarray(0, part.length));
      for (let r = 1; r < this.size; r++) {
        const s = this.slot(r);
        if (op === 'sum') for (let i = 0; i < part.length; i++) part[i] += s[i];
        else for (let i = 0; i < part.length; i++) part[i] = Math.max(part[i], s[i]);
      }
      await this.barrier(); // nobody overwrites a slot until every rank has read it
    }
  }

  async allGather(send: Float32Array, recv: Float32Array): Promise<void> {
    this.fits(send.length, 'allGather');
    if (recv.length !== send.length * this.size) throw new BackendError('allGather receive buffer has the wrong length', { expected: `${send.length * this.size}`, found: `${recv.length}` });
    this.slot(this.rank).set(send);
    await this.barrier();
    for (let r = 0; r < this.size; r++) recv.set(this.slot(r).subarray(0, send.length), r * send.length);
    await this.barrier();
  }

  async allToAll(send: Float32Array, recv: Float32Array, sendCounts: readonly number[], recvCounts: readonly number[]): Promise<void> {
    this.fits(send.length, 'allToAll');
    const total = (c: readonly number[]) => c.reduce((a, b) => a + b, 0);
    if (sendCounts.length !== this.size || total(sendCounts) !== send.length) throw new BackendError('allToAll sendCounts do not cover the send buffer', { expected: `${this.size} counts summing to ${send.length}`, found: JSON.stringify(sendCounts) });
    if (recvCounts.length !== this.size || total(recvCounts) !== recv.length) throw new BackendError('allToAll recvCounts do not cover the receive buffer', { expected: `${this.size} counts summing to ${recv.length}`, found: JSON.stringify(recvCounts) });
    const counts = this.countRow(this.rank);
    counts.set(sendCounts);
    this.slot(this.rank).set(send);
    await this.barrier();
    let at = 0;
    for (let src = 0; src < this.size; src++) {
      const row = this.countRow(src);
      let offset = 0;
      for (let d = 0; d < this.rank; d++) offset += row[d];
      if (row[this.rank] !== recvCounts[src]) throw new BackendError(`allToAll: rank ${src} sends ${row[this.rank]} values to rank ${this.rank}, which expects ${recvCounts[src]}`);
      recv.set(this.slot(src).subarray(offset, offset + row[this.rank]), at);
      at += row[this.rank];
    }
    await this.barrier();
  }

  async send(buf: Float32Array, peer: number): Promise<void> {
    this.fits(buf.length, 'send');
    const flag = this.flagIndex(this.rank, peer);
    await this.waitFor(flag, 0); // the previous message has been taken
    this.box(this.rank, peer).set(buf);
    Atomics.store(this.ctl, flag + 1, buf.length);
    Atomics.store(this.ctl, flag, 1);
    Atomics.notify(this.ctl, flag);
  }

  async recv(buf: Float32Array, peer: number): Promise<void> {
    const flag = this.flagIndex(peer, this.rank);
    await this.waitFor(flag, 1);
    const length = Atomics.load(this.ctl, flag + 1);
    if (length !== buf.length) throw new BackendError(`recv from rank ${peer}: message of ${length} values, buffer of ${buf.length}`);
    buf.set(this.box(peer, this.rank).subarray(0, length));
    Atomics.store(this.ctl, flag, 0);
    Atomics.notify(this.ctl, flag);
  }

  /** Closes the whole group: a failed or disposed rank must not leave its peers waiting. */
  async close(): Promise<void> {
    Atomics.store(this.ctl, CLOSED, 1);
    for (let i = 0; i < this.ctl.length; i++) Atomics.notify(this.ctl, i);
  }

  private get closed(): boolean {
    return Atomics.load(this.ctl, CLOSED) === 1;
  }

  /** A generation barrier: the last rank to arrive resets the count and bumps the generation. */
  private async barrier(): Promise<void> {
    if (this.closed) throw new BackendError(`the communicator group of rank ${this.rank} is closed (a rank failed or the program was disposed)`);
    const generation = Atomics.load(this.ctl, GENERATION);
    if (Atomics.add(this.ctl, COUNT, 1) === this.size - 1) {
      Atomics.store(this.ctl, COUNT, 0);
      Atomics.add(this.ctl, GENERATION, 1);
      Atomics.notify(this.ctl, GENERATION);
      return;
    }
    await this.waitWhile(GENERATION, (g) => g === generation, 'a barrier');
  }

  private waitFor(index: number, value: number): Promise<void> {
    return this.waitWhile(index, (v) => v !== value, 'a message');
  }

  /**
   * Waits while `busy(ctl[index])`. Atomics.waitAsync does not keep Node's event loop alive, so a timer
   * does (a rank's thread would otherwise exit mid-collective); a deadline turns a dead or hung peer into
   * an error instead of a hang.
   */
  private async waitWhile(index: number, busy: (v: number) => boolean, what: string): Promise<void> {
    let now = Atomics.load(this.ctl, index);
    if (!busy(now)) return;
    const keepAlive = setInterval(() => {}, 1 << 30);
    const deadline = Date.now() + this.group.timeoutMs;
    try {
      while (busy(now)) {
        if (this.closed) throw new BackendError(`the communicator group was closed while rank ${this.rank} waited for ${what} (a rank failed or the program was disposed)`);
        if (Date.now() > deadline) throw new BackendError(`rank ${this.rank} waited ${this.group.timeoutMs} ms for ${what}: a peer rank died or hung`);
        const w = Atomics.waitAsync(this.ctl, index, now, 250);
        if (w.async) await w.value;
        now = Atomics.load(this.ctl, index);
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  private fits(n: number, what: string): void {
    if (n > this.group.slotFloats) throw new BackendError(`${what} of ${n} values exceeds the shared-memory slot`, { expected: `at most ${this.group.slotFloats} values (raise slotBytes)`, found: `${n}` });
  }

  private slot(r: number): Float32Array {
    return this.slots.subarray(r * this.group.slotFloats, (r + 1) * this.group.slotFloats);
  }

  private box(src: number, dst: number): Float32Array {
    const i = src * this.size + dst;
    return this.mail.subarray(i * this.group.slotFloats, (i + 1) * this.group.slotFloats);
  }

  private flagIndex(src: number, dst: number): number {
    return HEADER + 2 * (src * this.size + dst);
  }

  private countRow(r: number): Int32Array {
    const base = HEADER + 2 * this.size * this.size + r * this.size;
    return this.ctl.subarray(base, base + this.size);
  }
}
