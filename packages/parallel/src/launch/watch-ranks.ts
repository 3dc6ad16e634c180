// How a launcher follows its ranks, whatever carries them (worker threads, ranks of another node) and
// whatever they run (a parallel grid, data-parallel replicas). A rank's error report, thread failure or
// exit breaks the program, unless it exits after dispose; one before every rank is ready also fails the
// launch, which then lets the ranks go (compiled ones free their device memory first) and throws its error.
import { releaseFailedLaunch, type DisposableRank } from './failed-launch.js';

/** One rank's events as the leader hears them: a Worker, or a stand-in for a rank of another node. */
export interface RankEvents<M> extends DisposableRank {
  on(event: 'message', listener: (m: M) => void): unknown;
  on(event: 'error', listener: (e: Error) => void): unknown;
  on(event: 'exit', listener: (code: number) => void): unknown;
}

/** What a launcher makes of its ranks' events. */
export interface RankWiring<M> {
  /** Rank r's message: 'ready' for its ready message, the Error it reports, or undefined for a reply taken. */
  message(r: number, m: M): 'ready' | Error | undefined;
  /** The error that rank r's thread failure breaks the program with. */
  failed(r: number, e: Error): Error;
  /** The error that rank r's exit breaks the program with (and fails the launch, before every rank is ready). */
  exited(r: number, code: number): Error;
  /** Fails what is in flight and stops the ranks' communication, so none keeps waiting for a failed peer. */
  breakAll(e: Error): void;
  /** Whether the program was disposed: its ranks' exits are then expected. */
  disposed(): boolean;
  /** Frees what the launch holds besides the ranks (shared-memory groups), after a failed launch let them go. */
  release?(): Promise<void>;
}

/** Wires every rank's events and waits until each is ready; a failed launch releases the ranks and throws. */
export async function launchRanks<M>(links: readonly RankEvents<M>[], wiring: RankWiring<M>, graceMs: number): Promise<void> {
  let launchFailed = false;
  const ready = links.map((link, r) => watchRank(link, r, wiring, () => launchFailed));
  try {
    await Promise.all(ready);
  } catch (e) {
    launchFailed = true;
    await releaseFailedLaunch(links, ready, graceMs);
    await wiring.release?.();
    throw e;
  }
}

/** Resolves on rank r's ready message; rejects with the first error it reports, or on its exit. */
function watchRank<M>(link: RankEvents<M>, r: number, w: RankWiring<M>, launchFailed: () => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => {
      reject(e);
      w.breakAll(e);
    };
    link.on('message', (m: M) => {
      const said = w.message(r, m);
      if (said === 'ready') resolve();
      else if (said) fail(said);
    });
    link.on('error', (e: Error) => fail(w.failed(r, e)));
    link.on('exit', (code: number) => {
      const e = w.exited(r, code);
      reject(e);
      if (!launchFailed() && !w.disposed()) w.breakAll(e);
    });
  });
}
