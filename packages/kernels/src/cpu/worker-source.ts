// The pool's worker, as plain JavaScript evaluated by worker_threads (eval: true), so it needs no file of
// its own next to the bundle and runs the same from src/ and dist/. It instantiates the kernel module
// over the shared memory, then loops: wait for a new epoch in the control block (spinning for up to
// spinMs first, since the next kernel of a step usually follows within microseconds, then sleeping in
// Atomics.wait), read that dispatch's fields, and if it has a share (share tid − shift of nthreads) run it
// and count itself done. Control block slots and why the fields alternate: see thread-pool.ts.
export const WORKER_SOURCE = `
'use strict';
const { workerData } = require('node:worker_threads');
const { module, memory, control, tid, names, spinMs } = workerData;
const EPOCH = 0, PENDING = 1, ERROR = 5, READY = 6, FIELDS = 8, MESSAGE = 16, MESSAGE_BYTES = 1024;
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
  // The dispatch's fields (its slot, by epoch parity), taken only if the epoch has not moved on while they
  // were read: else this worker had no share of it (the main thread would have waited) and reads the newest.
  const f = FIELDS + 4 * (e & 1);
  const k = Atomics.load(c, f), args = Atomics.load(c, f + 1), nt = Atomics.load(c, f + 2), shift = Atomics.load(c, f + 3);
  seen = e;
  if (Atomics.load(c, EPOCH) !== e) continue;
  if (k < 0) break;
  const share = tid - shift; // shift 1: the main thread does other work, the workers split the kernel
  if (share < 0 || share >= nt) continue; // no share: not waited for
  try {
    fns[k](args, share, nt);
  } catch (err) {
    fail(err);
  }
  if (Atomics.sub(c, PENDING, 1) === 1) Atomics.notify(c, PENDING);
}
`;
