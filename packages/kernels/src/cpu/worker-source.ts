// The pool's worker, as plain JavaScript evaluated by worker_threads (eval: true), so it needs no file of
// its own next to the bundle and runs the same from src/ and dist/. It instantiates the kernel module
// over the shared memory, then loops: wait for a new epoch in the control block (spinning for up to
// spinMs first, since the next kernel of a step usually follows within microseconds, then sleeping in
// Atomics.wait), then claim shares of the current dispatch and run them until none is left, counting each
// one done. Control block slots and the claim word: see thread-pool.ts.
export const WORKER_SOURCE = `
'use strict';
const { workerData } = require('node:worker_threads');
const { module, memory, control, tid, names, spinMs } = workerData;
const EPOCH = 0, DONE = 1, KERNEL = 2, ARGS = 3, CLAIM = 4, ERROR = 5, READY = 6, STOP = 7, MESSAGE = 16, MESSAGE_BYTES = 1024;
const CLAIM_SHIFT = 16, SHARE_MASK = (1 << CLAIM_SHIFT) - 1;
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
  if (Atomics.load(c, STOP)) break;
  // A share claimed here belongs to the dispatch whose claim word it came from (even one newer than the
  // epoch seen above): that dispatch's kernel and arguments stay put until all its shares are done.
  for (;;) {
    const w = Atomics.add(c, CLAIM, 1);
    const shares = w >>> CLAIM_SHIFT, share = w & SHARE_MASK;
    if (share >= shares) break;
    try {
      fns[c[KERNEL]](c[ARGS], share, shares);
    } catch (err) {
      fail(err);
    }
    if (Atomics.add(c, DONE, 1) + 1 === shares) Atomics.notify(c, DONE);
  }
}
`;
