// KV-cache blocks to and from page-locked host memory (Program.kvBlocks: KV-cache offload) on the copy
// stream of the program's Gpu, beside its compute stream. The cache is one allocation: per layer K then V,
// each [blocks + 1 (the scratch block of padded decode rows), blockSize, kvHeads·headDim] in the cache
// dtype (activation dtype or fp8 e4m3), so a block of one layer's K or V is one contiguous run of
// blockSize·kvHeads·headDim elements: one copy each.
//
// Ordering: each transfer makes the copy stream wait for an event recorded on the compute stream when it
// is called, so a save reads what the steps enqueued before it wrote, and a load overwrites a block only
// after those steps are done with it; the copy stream keeps transfers in call order. Steps do not wait
// for transfers on the device: the caller awaits a transfer's promise (resolved when its "copy done" event
// completes, polled without blocking) before it runs a step that uses the blocks, which lets the next
// micro-batch's loads run while the current one computes.
import { BackendError, type KvBlockTransfer } from '@zinfer/core';
import { checkBlocks, storeBytes } from '../reference/kv-block-transfer.js';
import { eventDone, type CopyEngine } from './copy-engine.js';
import type { Gpu } from './gpu.js';
import type { HostMemory } from './host-memory.js';
import type { ProgramParts } from './program.js';

export class CudaKvTransfer implements KvBlockTransfer {
  readonly blockBytes: number;
  /** Bytes of one block in one layer's K (or V). */
  private readonly blockLayerBytes: number;

  constructor(private readonly gpu: Gpu, private readonly kv: NonNullable<ProgramParts['kv']>, private readonly layers: number, private readonly host: HostMemory) {
    this.blockLayerBytes = kv.layerBytes / (kv.spec.numBlocks + 1);
    this.blockBytes = 2 * layers * this.blockLayerBytes;
  }

  allocHost(blocks: number): ArrayBuffer {
    return this.host.alloc(storeBytes(blocks, this.blockBytes));
  }

  freeHost(store: ArrayBuffer): void {
    this.host.free(store);
  }

  save(deviceBlocks: Int32Array, store: ArrayBuffer, hostBlocks: Int32Array): Promise<void> {
    return this.transfer(true, deviceBlocks, store, hostBlocks);
  }

  load(hostBlocks: Int32Array, store: ArrayBuffer, deviceBlocks: Int32Array): Promise<void> {
    return this.transfer(false, deviceBlocks, store, hostBlocks);
  }

  private async transfer(toHost: boolean, deviceBlocks: Int32Array, store: ArrayBuffer, hostBlocks: Int32Array): Promise<void> {
    checkBlocks(deviceBlocks, hostBlocks, this.kv.spec.numBlocks, Math.floor(store.byteLength / this.blockBytes));
    const base = this.host.address(new Uint8Array(store));
    if (base === null) throw new BackendError('a KV host store must come from kvBlocks.allocHost (page-locked memory the copy stream can read and write)', { field: 'store' });
    if (!this.gpu.copyEngine) throw new BackendError(`${this.gpu.name} has no copy stream for KV-cache transfers`);
    this.gpu.enter();
    const copies = this.gpu.copyEngine();
    const [after, done] = [copies.event(), copies.event()];
    try {
      copies.record(after, 'compute');
      copies.wait('copy', after);
      this.enqueue(copies, toHost, deviceBlocks, base, hostBlocks);
      copies.record(done, 'copy');
      await eventDone(copies, done);
    } finally {
      this.gpu.enter(); // another program's context may be current after the await
      copies.destroyEvent(after);
      copies.destroyEvent(done);
    }
  }

  /** Each block's K and V of every layer: one copy each (the host store is block-major, the cache part-major). */
  private enqueue(copies: CopyEngine, toHost: boolean, deviceBlocks: Int32Array, base: bigint, hostBlocks: Int32Array): void {
    const { blockLayerBytes, blockBytes, kv } = this;
    deviceBlocks.forEach((d, i) => {
      for (let part = 0; part < 2 * this.layers; part++) {
        // Part p is layer p >> 1's K (even) or V (odd): at p·layerBytes on the device, p·blockLayerBytes into a host block.
        const dev = kv.ptr + BigInt(part * kv.layerBytes + d * blockLayerBytes);
        const host = base + BigInt(hostBlocks[i] * blockBytes + part * blockLayerBytes);
        if (toHost) copies.copyToHost(host, dev, blockLayerBytes);
        else copies.copy(dev, host, blockLayerBytes);
      }
    });
  }
}
