// One rank's NCCL communicator handle in shared memory, so the leader thread can abort it when its owner
// is stuck: a rank blocked in cuStreamSynchronize on a collective whose peer died never returns to its
// event loop, but ncclCommAbort from another thread makes NCCL's kernels give up. A state word decides
// who may free the handle, exactly once: the owner (destroy or abort) or the leader (abort).
import type { Nccl } from './api.js';

/** The rank has not created its communicator yet. */
const PENDING = 0;
const LIVE = 1;
/** Destroyed or aborted: nobody may use the handle. */
const ENDED = 2;

export interface CommCells {
  /** Int32 state per cell. */
  states: SharedArrayBuffer;
  /** BigInt64 handle per cell. */
  handles: SharedArrayBuffer;
}

export function createCommCells(count: number): CommCells {
  return { states: new SharedArrayBuffer(count * 4), handles: new SharedArrayBuffer(count * 8) };
}

export class CommCell {
  private readonly states: Int32Array;
  private readonly handles: BigInt64Array;

  constructor(cells: CommCells, private readonly index: number) {
    this.states = new Int32Array(cells.states);
    this.handles = new BigInt64Array(cells.handles);
  }

  get live(): boolean {
    return Atomics.load(this.states, this.index) === LIVE;
  }

  get handle(): bigint {
    return Atomics.load(this.handles, this.index);
  }

  /** Publishes a new communicator; false when the cell was ended meanwhile (the caller must abort it). */
  publish(comm: bigint): boolean {
    Atomics.store(this.handles, this.index, comm);
    return Atomics.compareExchange(this.states, this.index, PENDING, LIVE) === PENDING;
  }

  /**
   * Ends the cell; the caller that wins frees the communicator with `free` (ncclCommDestroy or
   * ncclCommAbort). A cell still pending is ended too, so a communicator published later is aborted.
   */
  end(free: (comm: bigint) => void): void {
    if (Atomics.compareExchange(this.states, this.index, PENDING, ENDED) === PENDING) return;
    if (Atomics.compareExchange(this.states, this.index, LIVE, ENDED) === LIVE) free(this.handle);
  }
}

/** Aborts every communicator of the cells still live (the leader's last resort for stuck ranks). */
export function abortCells(nccl: Nccl, cells: CommCells): void {
  const count = cells.states.byteLength / 4;
  for (let i = 0; i < count; i++) new CommCell(cells, i).end((comm) => nccl.api.ncclCommAbort(comm));
}
