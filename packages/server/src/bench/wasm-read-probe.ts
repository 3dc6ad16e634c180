// The DRAM read probe for machines without a C compiler: every core streams its slice of one shared
// WebAssembly memory with 128-bit loads (the widest wasm has), from a worker_thread each. It reads
// less than the native probe's 512-bit loads can where one core cannot saturate memory with 128-bit
// loads, so its figure is a lower bound of the limit; the bench says which probe ran.
import { Worker } from 'node:worker_threads';
import { leb, name, section } from './wasm-bytes.js';

// The parts of the WebAssembly global used here (lib ES2022 and @types/node 20 do not declare it).
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum: number; shared: true }) => { readonly buffer: SharedArrayBuffer };
  compile(bytes: Uint8Array): Promise<object>;
};

/**
 * (func (param $p i32) (param $end i32) (result i32)): XOR-folds [p, end) into four v128 accumulators,
 * 128 bytes a loop turn, and returns one lane so that the loads cannot be dropped.
 * Hand-assembled: the module is ~120 bytes and needs no toolchain.
 */
function readModuleBytes(pages: number): Uint8Array {
  const xorLoad = (acc: number, offset: number) => [0x20, acc, 0x20, 0x00, 0xfd, 0x00, 0x04, ...leb(offset), 0xfd, 0x51, 0x21, acc];
  const body = [
    0x01, 0x04, 0x7b, // locals: 4 × v128 (indices 2..5)
    0x03, 0x40, // loop
    ...[0, 1, 2, 3, 4, 5, 6, 7].flatMap((i) => xorLoad(2 + (i % 4), i * 16)),
    0x20, 0x00, 0x41, 0x80, 0x01, 0x6a, 0x22, 0x00, // p += 128 (tee)
    0x20, 0x01, 0x49, 0x0d, 0x00, // br_if p < end (unsigned)
    0x0b,
    0x20, 0x02, 0x20, 0x03, 0xfd, 0x51, 0x20, 0x04, 0xfd, 0x51, 0x20, 0x05, 0xfd, 0x51, 0xfd, 0x1b, 0x00, // lane 0 of a^b^c^d
    0x0b,
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]),
    ...section(2, [0x01, ...name('env'), ...name('mem'), 0x02, 0x03, ...leb(pages), ...leb(pages)]),
    ...section(3, [0x01, 0x00]),
    ...section(7, [0x01, ...name('read'), 0x00, 0x00]),
    ...section(10, [0x01, ...leb(body.length), ...body]),
  ]);
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, start, end } = workerData;
const { read } = new WebAssembly.Instance(module, { env: { mem: memory } }).exports;
parentPort.on('message', (m) => (m === 'exit' ? process.exit(0) : parentPort.postMessage(read(start, end))));
`;

export interface ReadProbeResult {
  /** Best run: the limit. */
  gbPerS: number;
  medianGbPerS: number;
  bytes: number;
  runs: number;
  threads: number;
}

/** Best of `runs` reads of `mib` MiB (at most 3 GiB, a 32-bit wasm memory) by `threads` workers. */
export async function wasmReadProbe(threads: number, mib = 1024, runs = 7): Promise<ReadProbeResult> {
  const bytes = Math.min(mib, 3072) * 2 ** 20;
  const pages = bytes / 65536;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const words = new Uint32Array(memory.buffer);
  for (let i = 0; i < words.length; i++) words[i] = Math.imul(i, 0x9e3779b9); // touch every page, distinct data
  const module = await WebAssembly.compile(readModuleBytes(pages));
  const slice = Math.floor(bytes / threads / 128) * 128;
  const workers = Array.from({ length: threads }, (_, i) => new Worker(WORKER, { eval: true, workerData: { module, memory, start: i * slice, end: (i + 1) * slice } }));
  try {
    await Promise.all(workers.map((w) => new Promise((res, rej) => w.once('online', res).once('error', rej))));
    const once = (): Promise<unknown[]> => Promise.all(workers.map((w) => new Promise((res) => (w.once('message', res), w.postMessage('run')))));
    await once(); // warm-up: compile tiers, wake the workers
    const rates: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t0 = performance.now();
      await once();
      rates.push((slice * threads) / ((performance.now() - t0) / 1e3) / 1e9);
    }
    rates.sort((a, b) => a - b);
    return { gbPerS: rates[runs - 1], medianGbPerS: rates[runs >> 1], bytes: slice * threads, runs, threads };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
