// A healthy rank told to dispose frees its device memory and communicators, then exits. The grace covers a
// stuck one: the launcher terminates it after.
import type { DisposableRank } from './failed-launch.js';

/** Asks rank `w` to dispose; resolves once it has exited, or after `graceMs`. */
export function disposeRank(w: DisposableRank, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, graceMs);
    timer.unref();
    w.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    w.postMessage({ type: 'dispose' });
  });
}
