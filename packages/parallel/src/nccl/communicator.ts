// The CUDA ranks' communicator: NCCL. `device` enqueues collectives on the caller's stream over device
// buffers (what the CUDA backend's programs use, also inside captured CUDA graphs); the host methods of
// Communicator stage Float32Arrays through device memory on a stream of their own and wait, so they block
// this thread: one rank per thread (worker threads), never several ranks on one.
import { BackendError, type Communicator, type DeviceCollectives, type FloatDType } from '@zinfer/core';
import { NCCL_DTYPE, NCCL_OP, type Nccl } from './api.js';
import type { CommCell } from './comm-cell.js';
import { StagingBuffers } from './cuda-context.js';

export class NcclDeviceCollectives implements DeviceCollectives {
  readonly library = 'nccl';

  constructor(private readonly nccl: Nccl, private readonly cell: CommCell, readonly rank: number, readonly size: number) {}

  allReduce(send: bigint, recv: bigint, count: number, dtype: FloatDType, stream: bigint, op: 'sum' | 'max' = 'sum'): void {
    const comm = this.comm('allReduce');
    this.nccl.check('ncclAllReduce', this.nccl.api.ncclAllReduce(send, recv, count, NCCL_DTYPE[dtype], NCCL_OP[op], comm, stream), comm, `${count} ${dtype}`);
  }

  allGather(send: bigint, recv: bigint, count: number, dtype: FloatDType, stream: bigint): void {
    const comm = this.comm('allGather');
    this.nccl.check('ncclAllGather', this.nccl.api.ncclAllGather(send, recv, count, NCCL_DTYPE[dtype], comm, stream), comm, `${count} ${dtype} a rank`);
  }

  send(buf: bigint, count: number, dtype: FloatDType, peer: number, stream: bigint): void {
    const comm = this.comm('send', peer);
    this.nccl.check('ncclSend', this.nccl.api.ncclSend(buf, count, NCCL_DTYPE[dtype], peer, comm, stream), comm, `${count} ${dtype} to rank ${peer}`);
  }

  recv(buf: bigint, count: number, dtype: FloatDType, peer: number, stream: bigint): void {
    const comm = this.comm('recv', peer);
    this.nccl.check('ncclRecv', this.nccl.api.ncclRecv(buf, count, NCCL_DTYPE[dtype], peer, comm, stream), comm, `${count} ${dtype} from rank ${peer}`);
  }

  /** Runs `calls` as one NCCL group (their sends and receives progress together, as allToAll needs). */
  group(calls: () => void): void {
    this.nccl.check('ncclGroupStart', this.nccl.api.ncclGroupStart());
    try {
      calls();
    } finally {
      this.nccl.check('ncclGroupEnd', this.nccl.api.ncclGroupEnd());
    }
  }

  private comm(what: string, peer?: number): bigint {
    if (!this.cell.live) throw new BackendError(`NCCL ${what} on rank ${this.rank}: the communicator was closed or aborted (a rank failed or the program was disposed)`);
    if (peer !== undefined && !(Number.isInteger(peer) && peer >= 0 && peer < this.size && peer !== this.rank)) {
      throw new BackendError(`NCCL ${what}: no peer rank ${peer}`, { field: 'peer', expected: `another rank of 0..${this.size - 1}`, found: String(peer) });
    }
    return this.cell.handle;
  }
}

export class NcclCommunicator implements Communicator {
  readonly device: NcclDeviceCollectives;
  private staging: StagingBuffers | null = null;

  constructor(private readonly nccl: Nccl, private readonly cell: CommCell, readonly rank: number, readonly size: number) {
    this.device = new NcclDeviceCollectives(nccl, cell, rank, size);
  }

  async allReduce(buf: Float32Array, op: 'sum' | 'max' = 'sum'): Promise<void> {
    const s = this.stage();
    const d = s.buffer(0, buf.byteLength);
    s.upload(d, buf);
    this.device.allReduce(d, d, buf.length, 'f32', s.stream, op);
    s.download(buf, d);
  }

  async allGather(send: Float32Array, recv: Float32Array): Promise<void> {
    if (recv.length !== send.length * this.size) throw new BackendError('allGather receive buffer has the wrong length', { expected: `${send.length * this.size}`, found: `${recv.length}` });
    const s = this.stage();
    const [ds, dr] = [s.buffer(0, send.byteLength), s.buffer(1, recv.byteLength)];
    s.upload(ds, send);
    this.device.allGather(ds, dr, send.length, 'f32', s.stream);
    s.download(recv, dr);
  }

  async allToAll(send: Float32Array, recv: Float32Array, sendCounts: readonly number[], recvCounts: readonly number[]): Promise<void> {
    const sum = (c: readonly number[]) => c.reduce((a, b) => a + b, 0);
    if (sendCounts.length !== this.size || sum(sendCounts) !== send.length) throw new BackendError('allToAll sendCounts do not cover the send buffer', { expected: `${this.size} counts summing to ${send.length}`, found: JSON.stringify(sendCounts) });
    if (recvCounts.length !== this.size || sum(recvCounts) !== recv.length) throw new BackendError('allToAll recvCounts do not cover the receive buffer', { expected: `${this.size} counts summing to ${recv.length}`, found: JSON.stringify(recvCounts) });
    const s = this.stage();
    const [ds, dr] = [s.buffer(0, send.byteLength), s.buffer(1, recv.byteLength)];
    s.upload(ds, send);
    if (sendCounts[this.rank] !== recvCounts[this.rank]) throw new BackendError(`allToAll: rank ${this.rank} sends itself ${sendCounts[this.rank]} values and expects ${recvCounts[this.rank]}`);
    const at = (ptr: bigint, counts: readonly number[], r: number) => ptr + BigInt(4 * sum(counts.slice(0, r)));
    const ownStart = sum(sendCounts.slice(0, this.rank));
    const own = send.slice(ownStart, ownStart + sendCounts[this.rank]); // stays on this rank: no NCCL call
    this.device.group(() => {
      for (let r = 0; r < this.size; r++) {
        if (r === this.rank) continue;
        if (sendCounts[r]) this.device.send(at(ds, sendCounts, r), sendCounts[r], 'f32', r, s.stream);
        if (recvCounts[r]) this.device.recv(at(dr, recvCounts, r), recvCounts[r], 'f32', r, s.stream);
      }
    });
    s.download(recv, dr);
    recv.set(own, sum(recvCounts.slice(0, this.rank)));
  }

  async send(buf: Float32Array, peer: number): Promise<void> {
    const s = this.stage();
    const d = s.buffer(0, buf.byteLength);
    s.upload(d, buf);
    this.device.send(d, buf.length, 'f32', peer, s.stream);
    s.synchronize();
  }

  async recv(buf: Float32Array, peer: number): Promise<void> {
    const s = this.stage();
    const d = s.buffer(0, buf.byteLength);
    this.device.recv(d, buf.length, 'f32', peer, s.stream);
    s.download(buf, d);
  }

  /** Destroys this rank's communicator (after its work is done); a no-op once closed or aborted. */
  async close(): Promise<void> {
    this.staging?.dispose();
    this.staging = null;
    this.cell.end((comm) => this.nccl.api.ncclCommDestroy(comm));
  }

  /** Aborts this rank's communicator: its pending collectives fail, and peers waiting on it stop. */
  abort(): void {
    this.cell.end((comm) => this.nccl.api.ncclCommAbort(comm));
  }

  private stage(): StagingBuffers {
    this.staging ??= new StagingBuffers();
    return this.staging;
  }
}
