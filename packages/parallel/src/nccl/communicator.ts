// The CUDA ranks' communicator: NCCL. `device` enqueues collectives on the caller's stream over device
// buffers (what the CUDA backend's programs use, also inside captured CUDA graphs); the host methods of
// Communicator stage Float32Arrays through device memory on a stream of their own and wait, so they block
// this thread: one rank per thread (worker threads), never several ranks on one.
import { BackendError, byteSize, type Communicator, type DeviceCollectives, type FloatDType, type PeerGroup } from '@zinfer/core';
import { NCCL_DTYPE, NCCL_OP, type Nccl } from './api.js';
import type { CommCell } from './comm-cell.js';
import { StagingBuffers } from './cuda-context.js';
import { hostPeerGroup } from './peer-group.js';

export class NcclDeviceCollectives implements DeviceCollectives {
  readonly library = 'nccl';

  constructor(private readonly nccl: Nccl, private readonly cell: CommCell, readonly rank: number, readonly size: number, readonly peers?: PeerGroup) {}

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

  allToAll(send: bigint, recv: bigint, sendCounts: readonly number[], recvCounts: readonly number[], dtype: FloatDType, stream: bigint): void {
    this.exchange(send, recv, sendCounts, recvCounts, dtype, stream, true);
  }

  /**
   * allToAll, where `withSelf` false leaves this rank's own block out of the NCCL calls (the host path copies
   * it itself); the blocks keep their places either way: offsets count every rank's block.
   */
  exchange(send: bigint, recv: bigint, sendCounts: readonly number[], recvCounts: readonly number[], dtype: FloatDType, stream: bigint, withSelf: boolean): void {
    const comm = this.comm('allToAll');
    for (const [name, c] of [['sendCounts', sendCounts], ['recvCounts', recvCounts]] as const) {
      if (c.length !== this.size || c.some((n) => !Number.isInteger(n) || n < 0)) throw new BackendError(`NCCL allToAll: bad ${name}`, { field: name, expected: `${this.size} non-negative integers`, found: JSON.stringify(c) });
    }
    const offsets = (c: readonly number[]) => c.map((_, r) => BigInt(byteSize(dtype, c.slice(0, r).reduce((a, b) => a + b, 0))));
    const [so, ro] = [offsets(sendCounts), offsets(recvCounts)];
    // Grouped, so every send and receive of the exchange progresses together; NCCL takes a rank itself as peer.
    this.group(() => {
      for (let r = 0; r < this.size; r++) {
        if (r === this.rank && !withSelf) continue;
        if (sendCounts[r]) this.nccl.check('ncclSend', this.nccl.api.ncclSend(send + so[r], sendCounts[r], NCCL_DTYPE[dtype], r, comm, stream), comm, `allToAll: ${sendCounts[r]} ${dtype} to rank ${r}`);
        if (recvCounts[r]) this.nccl.check('ncclRecv', this.nccl.api.ncclRecv(recv + ro[r], recvCounts[r], NCCL_DTYPE[dtype], r, comm, stream), comm, `allToAll: ${recvCounts[r]} ${dtype} from rank ${r}`);
      }
    });
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

  /** `devices`: every rank's device when the ranks are threads of this process (peer memory may be shared). */
  constructor(private readonly nccl: Nccl, private readonly cell: CommCell, readonly rank: number, readonly size: number, devices?: readonly number[]) {
    this.device = new NcclDeviceCollectives(nccl, cell, rank, size, devices && size > 1 ? hostPeerGroup(this, devices) : undefined);
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
    const ownStart = sum(sendCounts.slice(0, this.rank));
    const own = send.slice(ownStart, ownStart + sendCounts[this.rank]); // stays on this rank: no NCCL call
    this.device.exchange(ds, dr, sendCounts, recvCounts, 'f32', s.stream, false);
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
