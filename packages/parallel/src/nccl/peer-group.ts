// The PeerGroup of a device group whose ranks are threads of this process: the exchange rides on the
// group's host communicator (NCCL's host all-gather for CUDA ranks, the shm communicator in tests). Each
// 64-bit value travels as four 16-bit pieces in f32 slots, exact whatever the communicator does with
// floats (no NaN payloads, no rounding); a leading count checks every rank sent as many values.
import { BackendError, type Communicator, type PeerGroup } from '@zinfer/core';

const PIECES = 4;

export function hostPeerGroup(host: Pick<Communicator, 'rank' | 'size' | 'allGather'>, devices: readonly number[]): PeerGroup {
  if (devices.length !== host.size) {
    throw new BackendError('a peer group needs one device per rank', { field: 'devices', expected: `${host.size} device ordinals`, found: `${devices.length}` });
  }
  return {
    rank: host.rank,
    devices: [...devices],
    exchange: async (values) => {
      const slots = 1 + PIECES * values.length;
      const send = new Float32Array(slots);
      send[0] = values.length;
      values.forEach((v, i) => encode(v, send, 1 + PIECES * i));
      const recv = new Float32Array(slots * host.size);
      await host.allGather(send, recv);
      return Array.from({ length: host.size }, (_, r) => {
        const at = r * slots;
        if (recv[at] !== values.length) throw new BackendError(`peer exchange: rank ${r} sent ${recv[at]} values, rank ${host.rank} ${values.length}`, { expected: `${values.length} values from every rank`, found: `${recv[at]}` });
        return values.map((_v, i) => decode(recv, at + 1 + PIECES * i));
      });
    },
  };
}

function encode(v: bigint, out: Float32Array, at: number): void {
  if (v < 0n || v >= 1n << 64n) throw new BackendError(`peer exchange: ${v} is not an unsigned 64-bit value`, { expected: 'an integer in [0, 2^64)', found: String(v) });
  for (let i = 0; i < PIECES; i++) out[at + i] = Number((v >> BigInt(16 * i)) & 0xffffn);
}

function decode(a: Float32Array, at: number): bigint {
  let v = 0n;
  for (let i = 0; i < PIECES; i++) v |= BigInt(a[at + i]) << BigInt(16 * i);
  return v;
}
