// Page-locked host memory for weight streaming: what the cuda backend's allocHost hands to offload tiers
// (their host copies and disk read buffers), and the staging buffers of streamed programs. Each block is
// an ArrayBuffer over memory from cuMemHostAlloc (portable: every context may copy from it); copies from it
// run asynchronously on the copy stream, where a copy from pageable memory would be staged by the driver
// and block the host.
//
// Lifetime: a block lives as long as its ArrayBuffer is reachable. It is freed by free(buffer) (the caller
// promises that no view of it is used afterwards: the memory is gone, not detached), by freeAll() (the
// same promise for every block: for tools that must hand the RAM back before they start another process),
// when the ArrayBuffer is garbage collected, or at process exit. Programs look blocks up by buffer to find
// the host address of a tensor's view.
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';
import type { CudaDriver } from './driver.js';
import { CU, type Ptr } from './driver-api.js';
import { fmtBytes } from './format.js';

/** Where pinned blocks come from: the driver, or a fake for tests. */
export interface PinnedAllocator {
  /** A block of `bytes` page-locked bytes and its host address. */
  alloc(bytes: number): { buffer: ArrayBuffer; ptr: bigint };
  free(ptr: bigint): void;
}

export class HostMemory {
  private readonly blocks = new WeakMap<ArrayBuffer, bigint>();
  /** Live blocks: address → bytes and an id (a freed address may come back for a new block). */
  private readonly live = new Map<bigint, { bytes: number; id: number }>();
  private readonly collected = new FinalizationRegistry<{ ptr: bigint; id: number }>(({ ptr, id }) => this.release(ptr, id));
  private nextId = 1;
  /** Bytes currently allocated. */
  bytes = 0;

  constructor(private readonly allocator: PinnedAllocator) {}

  alloc(bytes: number): ArrayBuffer {
    if (!(Number.isSafeInteger(bytes) && bytes > 0)) throw new BackendError(`allocHost of ${bytes} bytes`, { field: 'bytes', expected: 'a positive integer', found: String(bytes) });
    const { buffer, ptr } = this.allocator.alloc(bytes);
    this.blocks.set(buffer, ptr);
    const id = this.nextId++;
    this.live.set(ptr, { bytes, id });
    this.bytes += bytes;
    this.collected.register(buffer, { ptr, id }, buffer);
    return buffer;
  }

  /** Host address of a view's first byte when it lies in a pinned block, else null (pageable memory). */
  address(view: ArrayBufferView): bigint | null {
    const ptr = this.blocks.get(view.buffer as ArrayBuffer);
    return ptr === undefined || !this.live.has(ptr) ? null : ptr + BigInt(view.byteOffset);
  }

  free(buffer: ArrayBuffer): void {
    const ptr = this.blocks.get(buffer);
    if (ptr === undefined || !this.live.has(ptr)) throw new BackendError('free of host memory that allocHost did not return (or freed already)');
    this.collected.unregister(buffer);
    this.blocks.delete(buffer);
    this.release(ptr);
  }

  /** Frees every block: no view of any may be touched afterwards. */
  freeAll(): void {
    for (const ptr of [...this.live.keys()]) this.release(ptr);
  }

  /** Frees the block at ptr (only if it is still block `id`, when given). */
  private release(ptr: bigint, id?: number): void {
    const block = this.live.get(ptr);
    if (block === undefined || (id !== undefined && block.id !== id)) return;
    this.live.delete(ptr);
    this.bytes -= block.bytes;
    this.allocator.free(ptr);
  }
}

/** Pinned blocks from cuMemHostAlloc, viewed through koffi (no copy). */
export function cudaPinnedAllocator(driver: CudaDriver, enter: () => void): PinnedAllocator {
  const hostAlloc = driver.api.cuMemHostAlloc;
  return {
    alloc(bytes) {
      if (!hostAlloc) throw new BackendError(`the CUDA driver ${driver.path} lacks cuMemHostAlloc, which pinned host memory needs`, { file: driver.path });
      enter();
      const p: [Ptr | null] = [null];
      const status = hostAlloc(p, bytes, CU.MEMHOSTALLOC_PORTABLE);
      if (status !== 0) throw new BackendError(`cannot pin ${fmtBytes(bytes)} of host memory: ${driver.error('cuMemHostAlloc', status).message}`, { expected: `${bytes} page-locked bytes`, found: `status ${status}` });
      return { buffer: koffi.view(p[0]!, bytes), ptr: BigInt(p[0]!) };
    },
    free(ptr) {
      enter();
      driver.check('cuMemFreeHost', driver.api.cuMemFreeHost(ptr));
    },
  };
}
