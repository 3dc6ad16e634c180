// Device memory that other GPUs of this process may read and write over NVLink: peer access between
// contexts (cuCtxEnablePeerAccess, once per pair and direction) and plain cuMemAlloc allocations, which
// peer access covers. The stream-ordered pool the programs allocate from is not used for these: a pool's
// memory needs access granted pool-wide (cuMemPoolSetAccess), which would map every activation buffer too.
import { BackendError } from '@zinfer/core';
import type { CudaDevice } from './device.js';
import { CU, type Ptr } from './driver-api.js';
import type { Gpu } from './gpu.js';

export interface PeerMemory {
  /** This GPU's device ordinal. */
  readonly ordinal: number;
  /** Whether this device can map `peer`'s memory (false when the driver lacks the calls). */
  canAccess(peer: number): boolean;
  /** Maps `peer`'s memory into this device's context (a no-op when already mapped). */
  enableAccess(peer: number): void;
  /** Device memory peers may map once they enabled access to this device. */
  alloc(bytes: number, what: string): bigint;
  free(ptr: bigint): void;
}

/** The driver's peer memory for a CUDA device. */
export class CudaPeerMemory implements PeerMemory {
  constructor(private readonly device: CudaDevice) {}

  get ordinal(): number {
    return this.device.props.ordinal;
  }

  canAccess(peer: number): boolean {
    const { api } = this.device.driver;
    if (!api.cuDeviceCanAccessPeer || !api.cuCtxEnablePeerAccess || !api.cuMemAlloc_v2 || !api.cuMemFree_v2) return false;
    if (peer === this.ordinal) return true;
    const [self, other, can]: [[number], [number], [number]] = [[0], [0], [0]];
    this.device.driver.check('cuDeviceGet', api.cuDeviceGet(self, this.ordinal));
    this.device.driver.check('cuDeviceGet', api.cuDeviceGet(other, peer), `peer device ${peer}`);
    this.device.driver.check('cuDeviceCanAccessPeer', api.cuDeviceCanAccessPeer(can, self[0], other[0]));
    return can[0] === 1;
  }

  enableAccess(peer: number): void {
    if (peer === this.ordinal) return;
    const { api } = this.device.driver;
    const dev: [number] = [0];
    this.device.driver.check('cuDeviceGet', api.cuDeviceGet(dev, peer), `peer device ${peer}`);
    const ctx: [Ptr | null] = [null];
    this.device.driver.check('cuDevicePrimaryCtxRetain', api.cuDevicePrimaryCtxRetain(ctx, dev[0]), `peer device ${peer}`);
    this.device.enter();
    const status = api.cuCtxEnablePeerAccess!(ctx[0]!, 0);
    if (status !== CU.ERROR_PEER_ACCESS_ALREADY_ENABLED) this.device.driver.check('cuCtxEnablePeerAccess', status, `device ${this.ordinal} → device ${peer}`);
  }

  alloc(bytes: number, what: string): bigint {
    this.device.enter();
    const out: [number | bigint] = [0];
    const status = this.device.driver.api.cuMemAlloc_v2!(out, bytes);
    if (status !== 0) throw new BackendError(`cannot allocate ${bytes} bytes of peer-shared memory for ${what}: ${this.device.driver.error('cuMemAlloc_v2', status).message}`, { expected: `${bytes} bytes` });
    return BigInt(out[0]);
  }

  free(ptr: bigint): void {
    this.device.enter();
    this.device.driver.check('cuMemFree_v2', this.device.driver.api.cuMemFree_v2!(ptr));
  }
}

/**
 * Peer memory over a Gpu's own allocator, for the recording Gpu in tests: every device can map every
 * other one unless listed in `unreachable`, and allocations are the Gpu's (so launches that use them pass
 * its live-allocation checks).
 */
export class RecordingPeerMemory implements PeerMemory {
  readonly enabled: number[] = [];
  readonly allocations: bigint[] = [];

  constructor(private readonly gpu: Gpu, readonly ordinal: number, private readonly unreachable: readonly number[] = []) {}

  canAccess(peer: number): boolean {
    return !this.unreachable.includes(peer);
  }

  enableAccess(peer: number): void {
    if (!this.canAccess(peer)) throw new BackendError(`device ${this.ordinal} cannot map device ${peer}`);
    if (peer !== this.ordinal) this.enabled.push(peer);
  }

  alloc(bytes: number, what: string): bigint {
    const ptr = this.gpu.alloc(bytes, what);
    this.allocations.push(ptr);
    return ptr;
  }

  free(ptr: bigint): void {
    this.gpu.free(ptr);
    this.allocations.splice(this.allocations.indexOf(ptr), 1);
  }
}
