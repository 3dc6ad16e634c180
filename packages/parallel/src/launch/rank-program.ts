// The leader's side of a launched grid, whatever carries its ranks: worker threads of this process, or
// ranks of other node processes reached through the node's connection (multi-node). Every micro-batch of
// a step goes to all ranks and the output rank's results come back in order. A rank that dies, fails or
// does not finish a step within the timeout fails the step with a clear error and aborts the groups, so
// the other ranks stop waiting; the program cannot run again.
import { BackendError, type ParallelPlan, type Program, type StepBatch } from '@zinfer/core';
import type { RankReply, RankRequest } from '../rank-worker.js';
import { gatherExpertLoad } from './expert-load.js';
import { disposeRank } from './dispose-rank.js';
import { outputRank } from './groups.js';
import { concat, splitBatch } from './micro-batches.js';
import { chainSteps, pickingProgram, ranksChain, splitPick, type PickStep, type RankPick } from './rank-pick.js';
import { launchRanks } from './watch-ranks.js';

/** One rank as the leader sees it: a Worker, or a stand-in for a rank of another node with the same events. */
export interface RankLink {
  postMessage(m: RankRequest): void;
  on(event: 'message', listener: (m: RankReply) => void): unknown;
  on(event: 'error', listener: (e: Error) => void): unknown;
  on(event: 'exit', listener: (code: number) => void): unknown;
  once(event: 'exit', listener: () => void): unknown;
  terminate(): Promise<unknown>;
}

export interface RankSet {
  links: readonly RankLink[];
  plan: ParallelPlan;
  microBatches: (batch: StepBatch) => number;
  /** A step not finished by every rank within this many ms fails as a hung rank. */
  timeoutMs: number;
  /** Whether the leader spins while a step is out (see leaderSpins; default false). */
  leaderSpin?: boolean;
  /** After a failure: stop the ranks' communication, so none keeps waiting for a failed peer. */
  abort(exited: ReadonlySet<number>): void;
  /** Frees what the launch holds besides the ranks (shared-memory groups), once they are gone. */
  release(): Promise<void>;
  /** Dispose of a broken program, before its ranks are terminated (NCCL: abort what is still live). */
  abandon?(): void;
}

type Out = Float32Array | Int32Array;

/**
 * A launched program of ranks, with timeSteps: each rank runs one step `times` times back to back in its own
 * thread, with no message between the runs, and answers with its mean ms a run. Against the same step
 * through run() (a message to every rank and the answers back each time), it separates the leader's round
 * trips from the ranks' own step (the parallel bench reports both).
 */
export interface RanksProgram extends Program {
  timeSteps(batch: StepBatch, times: number): Promise<number[]>;
}

interface Pending {
  /** Ranks that have not answered yet. */
  waiting: Set<number>;
  out: Out | null;
  /** Each rank's mean ms a run (a repeated step). */
  ms: number[];
  timer: ReturnType<typeof setTimeout>;
  resolve: (out: Out) => void;
  reject: (e: Error) => void;
}

/**
 * Whether the leader spins while a step is out: its event loop turns over without sleeping (one immediate
 * after another; I/O still runs between them), so the ranks' answers are taken the moment they arrive
 * instead of after the thread wakes. It holds one core for the whole step. On by default for GPU ranks,
 * whose steps leave this thread idle: the 13B tp-2 step on 2 × H200 went 5.146–5.256 → 5.035–5.115 ms in five
 * same-call A/B pairs (BENCHMARKS.md, parallel, session 16). ZINFER_LEADER_SPIN=1 / 0 forces it either way,
 * read at each step (the bench's A/B switches it).
 */
function leaderSpins(fallback: boolean): boolean {
  const v = process.env.ZINFER_LEADER_SPIN;
  return v === '1' ? true : v === '0' ? false : fallback;
}

/** How long a rank gets to free its device memory on dispose before it is terminated. */
export const DISPOSE_GRACE_MS = 10_000;

export async function startRanks(set: RankSet): Promise<RanksProgram> {
  const { links, plan, timeoutMs } = set;
  const out = outputRank(plan);
  const pending = new Map<number, Pending>();
  /** expertLoad() requests waiting for their rank's answer. */
  const loads = new Map<number, { resolve: (l: Float64Array[] | null) => void; reject: (e: Error) => void }>();
  const exited = new Set<number>();
  let broken: Error | null = null;
  let disposed = false;
  let nextId = 1;

  const breakAll = (e: Error) => {
    if (broken) return;
    broken = e;
    for (const p of pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    pending.clear();
    for (const l of loads.values()) l.reject(e);
    loads.clear();
    set.abort(exited);
  };
  const onReply = (r: number, m: RankReply) => {
    if (m.type === 'expertLoad') {
      const l = loads.get(m.id);
      loads.delete(m.id);
      return m.error ? l?.reject(new BackendError(`rank ${r}: ${m.error}`)) : l?.resolve(m.load);
    }
    if (m.type !== 'out') return;
    const p = pending.get(m.id);
    if (!p) return;
    if (r === out) p.out = m.out;
    if (m.ms !== undefined) p.ms[r] = m.ms;
    p.waiting.delete(r);
    if (p.waiting.size === 0) {
      clearTimeout(p.timer);
      pending.delete(m.id);
      p.resolve(p.out!);
    }
  };

  await launchRanks<RankReply>(links, {
    message: (r, m) => {
      if (m.type === 'ready') return 'ready';
      if (m.type === 'error') return new BackendError(`rank ${r}: ${m.error.message}`);
      onReply(r, m);
      return undefined;
    },
    failed: (r, e) => new BackendError(`rank ${r} failed: ${e.message}`),
    exited: (r, code) => {
      exited.add(r);
      return new BackendError(`rank ${r} exited (code ${code})`);
    },
    breakAll,
    disposed: () => disposed,
    release: () => set.release(),
  }, DISPOSE_GRACE_MS);

  // `queued`: steps of other engine lanes a rank may have to finish first (each gets timeoutMs of its own).
  const send = (batch: StepBatch, queued = 0, pick?: RankPick, repeat?: number): Promise<Out> => sendFor(batch, queued, pick, repeat).then((p) => p.out);
  const sendFor = (batch: StepBatch, queued: number, pick?: RankPick, repeat?: number): Promise<{ out: Out; ms: number[] }> => {
    const id = nextId++;
    const limit = timeoutMs * (1 + queued) * (repeat ?? 1) * chainSteps(pick);
    return new Promise((resolve, reject) => {
      const waiting = new Set(links.keys());
      const timer = setTimeout(() => {
        const who = [...waiting].join(', ');
        breakAll(new BackendError(`rank${waiting.size > 1 ? 's' : ''} ${who} did not finish a step within ${limit} ms: hung or stuck in a collective`, {
          field: 'parallel timeoutMs', expected: `a step within ${limit} ms`, found: `no answer from rank ${who}`,
        }));
      }, limit);
      const ms: number[] = [];
      pending.set(id, { waiting, out: null, ms, timer, resolve: (o) => resolve({ out: o, ms }), reject });
      for (const w of links) w.postMessage({ type: 'run', id, batch, ...(pick ? { pick } : {}), ...(repeat ? { repeat } : {}) });
      if (leaderSpins(set.leaderSpin ?? false)) void spin();
    });
  };
  // One spinner however many steps are out (micro-batches of a pipeline go out together).
  let spinning = false;
  const spin = async () => {
    if (spinning) return;
    spinning = true;
    try {
      while (pending.size > 0) await new Promise<void>((r) => setImmediate(r));
    } finally {
      spinning = false;
    }
  };

  const step: PickStep = async (batch, pick, options) => {
    if (broken) throw broken;
    // Every micro-batch goes out at once: stage s works on micro-batch m while stage s+1 works on m-1.
    // A decode step of one of several engine lanes is one micro-batch: the other lanes fill the stages.
    const lanes = options?.concurrent ?? 1;
    const micro = chainSteps(pick) > 1 || (lanes > 1 && batch.sequences.every((s) => s.queryLength === 1)) ? 1 : set.microBatches(batch);
    const parts = splitBatch(batch, micro);
    const picks = splitPick(pick, parts);
    return concat(await Promise.all(parts.map((b, i) => send(b, lanes - 1, picks[i]))));
  };

  return {
    // Steps on disjoint sequences overlap in the stages (ranks take their messages in order, so stage s
    // runs one step's micro-batches while stage s+1 runs an earlier step's): an engine keeps one step a
    // stage in flight.
    concurrentSteps: plan.stages,
    // runArgmax / runSample: the output rank picks (on its device where its program can), no logits cross a thread.
    // runArgmaxSteps (one stage): every rank chains the steps itself, one message for all of them.
    ...pickingProgram(step, ranksChain(plan)),
    async timeSteps(batch, times) {
      if (broken) throw broken;
      if (!(Number.isInteger(times) && times >= 1)) throw new BackendError('timeSteps runs a step at least once', { field: 'times', expected: 'an integer ≥ 1', found: String(times) });
      if (set.microBatches(batch) !== 1) throw new BackendError('timeSteps takes a step of one micro-batch', { field: 'batch', expected: 'one micro-batch (a tensor-parallel plan, or a decode step of one lane)', found: `${set.microBatches(batch)} micro-batches` });
      return (await sendFor(batch, 0, { kind: 'argmax' }, times)).ms;
    },
    // The rank answers after the steps queued before the request: counts include every finished step.
    expertLoad: () => gatherExpertLoad(plan, (r) => {
      if (broken) return Promise.reject(broken);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        loads.set(id, { resolve, reject });
        links[r].postMessage({ type: 'expertLoad', id });
      });
    }),
    async dispose() {
      if (disposed) return;
      disposed = true;
      if (broken) set.abandon?.();
      // Healthy ranks free their device memory and communicators; the grace covers a stuck one.
      else await Promise.all(links.map((w, r) => (exited.has(r) ? undefined : disposeRank(w, DISPOSE_GRACE_MS))));
      await set.release();
      await Promise.all(links.map((w) => w.terminate()));
    },
  };
}
