// A backend for the KV-offload tests, loaded by worker ranks through its factory: the reference (or cpu)
// backend, whose programs count the KV blocks they save and load into shared memory (the factory's
// options carry a SharedArrayBuffer, so the counts of every rank's thread meet in the test's thread).
// `noTransfer`: programs without kvBlocks, for the capability error.
import type { KernelBackend, KvBlockTransfer, Program } from '@zinfer/core';
import { cpuBackend } from '@zinfer/kernels/cpu';
import { referenceBackend } from '@zinfer/kernels/reference';

export interface CountingOptions {
  inner: 'reference' | 'cpu';
  /** Int32 [blocks loaded, blocks saved], summed over every program of every rank. */
  counts: SharedArrayBuffer;
  noTransfer?: boolean;
}

export const LOADS = 0;
export const SAVES = 1;

export function countingBackend(opts: CountingOptions): KernelBackend {
  const inner = opts.inner === 'cpu' ? cpuBackend({ threads: 1 }) : referenceBackend();
  const counts = new Int32Array(opts.counts);
  return {
    ...inner,
    name: `counting-${inner.name}`,
    factory: { module: new URL(import.meta.url).href, exportName: 'countingBackend', options: opts },
    async compile(graph, weights, options) {
      const program = await inner.compile(graph, weights, options);
      const wrapped: Program = { run: (b, o) => program.run(b, o), dispose: () => program.dispose() };
      const transfer = program.kvBlocks;
      if (opts.noTransfer || !transfer) return wrapped;
      return { ...wrapped, kvBlocks: counted(transfer, counts) };
    },
  };
}

function counted(t: KvBlockTransfer, counts: Int32Array): KvBlockTransfer {
  return {
    blockBytes: t.blockBytes,
    allocHost: (blocks) => t.allocHost(blocks),
    freeHost: (store) => t.freeHost(store),
    save: (device, store, host) => {
      Atomics.add(counts, SAVES, device.length);
      return t.save(device, store, host);
    },
    load: (host, store, device) => {
      Atomics.add(counts, LOADS, device.length);
      return t.load(host, store, device);
    },
  };
}
