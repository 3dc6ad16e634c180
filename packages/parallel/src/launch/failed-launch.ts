// What a launch does when a rank fails before every rank is ready. Ranks that did compile free their device
// memory before they go: terminating them would leave it held until the process exits, and the next engine
// of this process would find the GPUs full. A rank still compiling gets the grace to finish first.
import { disposeRank } from './dispose-rank.js';

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** Disposes the ranks whose `ready` resolved (within `graceMs`), waits for them to exit, then terminates all. */
/** What a launch knows of a rank: a Worker, or a rank of another node with the same calls. */
export interface DisposableRank {
  postMessage(m: { type: 'dispose' }): void;
  once(event: 'exit', listener: () => void): unknown;
  terminate(): Promise<unknown>;
}

export async function releaseFailedLaunch(workers: readonly DisposableRank[], ready: readonly Promise<void>[], graceMs: number): Promise<void> {
  await Promise.all(workers.map(async (w, r) => {
    const compiled = await Promise.race([ready[r].then(() => true, () => false), delay(graceMs).then(() => false)]);
    if (compiled) await disposeRank(w, graceMs);
  }));
  await Promise.all(workers.map((w) => w.terminate()));
}
