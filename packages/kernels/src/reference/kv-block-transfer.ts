// KV-cache block transfers (Program.kvBlocks) for caches that already live in host memory: the reference
// backend's per-layer arrays and the cpu backend's wasm heap. A copy is a plain byte copy, done when the
// call returns, so the ordering the contract asks for holds by itself: a program runs one step at a time
// and the caller never moves a block that the running step uses.
import { BackendError, type KvBlockTransfer } from '@zinfer/core';

export interface HostKvCache {
  layers: number;
  numBlocks: number;
  /** Bytes of one block in one layer's K (or V) array: blockSize × kvHeads·headDim × element bytes. */
  blockLayerBytes: number;
  /** Layer l's K (kind 0) or V (kind 1) bytes; asked again on every copy (a wasm heap may have grown). */
  layer(l: number, kind: 0 | 1): Uint8Array;
}

export function hostKvBlocks(cache: HostKvCache): KvBlockTransfer {
  const { layers, numBlocks, blockLayerBytes } = cache;
  const blockBytes = 2 * layers * blockLayerBytes;
  const copy = (deviceBlocks: Int32Array, store: ArrayBuffer, hostBlocks: Int32Array, toHost: boolean) => {
    checkBlocks(deviceBlocks, hostBlocks, numBlocks, Math.floor(store.byteLength / blockBytes));
    const host = new Uint8Array(store);
    for (let l = 0; l < layers; l++) {
      for (const kind of [0, 1] as const) {
        const dev = cache.layer(l, kind);
        deviceBlocks.forEach((d, i) => {
          const at = hostBlocks[i] * blockBytes + (2 * l + kind) * blockLayerBytes;
          if (toHost) host.set(dev.subarray(d * blockLayerBytes, (d + 1) * blockLayerBytes), at);
          else dev.set(host.subarray(at, at + blockLayerBytes), d * blockLayerBytes);
        });
      }
    }
  };
  return {
    blockBytes,
    allocHost: (blocks) => new ArrayBuffer(storeBytes(blocks, blockBytes)),
    freeHost: () => {}, // plain memory: the garbage collector frees it
    save: async (deviceBlocks, store, hostBlocks) => copy(deviceBlocks, store, hostBlocks, true),
    load: async (hostBlocks, store, deviceBlocks) => copy(deviceBlocks, store, hostBlocks, false),
  };
}

/** Bytes of a host store of `blocks` blocks; a count that is not a positive integer names the field. */
export function storeBytes(blocks: number, blockBytes: number): number {
  if (!(Number.isSafeInteger(blocks) && blocks > 0)) throw new BackendError('a KV host store needs a positive number of blocks', { field: 'blocks', expected: 'an integer ≥ 1', found: String(blocks) });
  return blocks * blockBytes;
}

/** Both lists name blocks that exist: the device cache's, and the host store's. */
export function checkBlocks(deviceBlocks: Int32Array, hostBlocks: Int32Array, numBlocks: number, storeBlocks: number): void {
  if (deviceBlocks.length !== hostBlocks.length) {
    throw new BackendError('a KV block transfer pairs each device block with one host block', { field: 'hostBlocks', expected: `${deviceBlocks.length} blocks`, found: String(hostBlocks.length) });
  }
  deviceBlocks.forEach((d, i) => {
    if (!(d >= 0 && d < numBlocks)) throw new BackendError('a KV block transfer names a block outside the device cache', { field: `deviceBlocks[${i}]`, expected: `a block in [0, ${numBlocks})`, found: String(d) });
    const h = hostBlocks[i];
    if (!(h >= 0 && h < storeBlocks)) throw new BackendError('a KV block transfer names a block outside the host store', { field: `hostBlocks[${i}]`, expected: `a block in [0, ${storeBlocks})`, found: String(h) });
  });
}
