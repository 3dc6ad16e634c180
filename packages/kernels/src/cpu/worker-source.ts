// The pool's worker, as plain JavaScript evaluated by worker_threads (eval: true), so it needs no file of
// its own next to the bundle and runs the same from src/ and dist/. It instantiates the kernel module
// over the shared memory, then loops: wait for a new epoch in the control block (spinning for up to
// spinMs first, since the next kernel of a step usually follows within microseconds, then sleeping in
// Atomics.wait), run its share of the kernel (share tid − SHIFT of NT), count itself done. Control block
// slots: see thread-pool.ts.
export const WORKER_SOURCE = `
'use strict';
const { workerData } = require('node:worker_threads');
const { module, memory, control, tid, names, spinMs } = workerData;
const EPOCH = 0, PENDING = 1, KERNEL = 2, ARGS = 3, NT = 4, ERROR = 5, READY = 6, SHIFT = 7, MESSAGE = 16, MESSAGE_BYTES = 1024;
const c = new Int32Array(control);
const fail = (e) => {
  if (Atomics.compareExchange(c, ERROR, 0, tid + 1) !== 0) return;
  const text = new TextEncoder().encode(String(e && e.stack || e)).subarray(0, MESSAGE_BYTES);
  new Uint8Array(control, MESSAGE * 4, MESSAGE_BYTES).set(text);
};
let fns = [];
try {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  fns = names.map((n) => instance.exports[n]);
} catch (e) {
  fail(e);
}
Atomics.add(c, READY, 1);
Atomics.notify(c, READY);
let seen = 0;
for (;;) {
  let e = Atomics.load(c, EPOCH);
  if (e === seen && spinMs > 0) {
    const until = performance.now() + spinMs;
    for (let i = 1; e === seen; i++) {
      e = Atomics.load(c, EPOCH);
      if ((i & 127) === 0 && performance.now() > until) break;
    }
  }
  while (e === seen) {
    Atomics.wait(c, EPOCH, seen);
    e = Atomics.load(c, EPOCH);
  }
  seen = e;
  const k = c[KERNEL];
  if (k < 0) break;
  const nt = c[NT];
  const share = tid - c[SHIFT]; // SHIFT 1: the main thread does other work, the workers split the kernel
  if (share < nt) {
    try {
      fns[k](c[ARGS], share, nt);
    } catch (err) {
      fail(err);
    }
  }
  if (Atomics.sub(c, PENDING, 1) === 1) Atomics.notify(c, PENDING);
}
`;
