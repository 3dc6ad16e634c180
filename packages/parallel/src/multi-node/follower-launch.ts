// One launch on a follower node: its ranks' workers, relayed to and from the leader. It ends when every
// worker has exited (the leader disposed the program, or terminated it after a failure); then the node's
// groups are closed and the follower waits for the next launch.
import type { Worker } from 'node:worker_threads';
import type { RankReply } from '../rank-worker.js';
import { closeGroups } from '../launch/groups.js';
import { abortNcclGrid } from '../launch/nccl-grid.js';
import { ABORT_GRACE_MS } from '../launch/workers.js';
import type { ToFollower, ToLeader } from './messages.js';
import { spawnNodeRanks, type NodeRanks } from './node-ranks.js';
import { RelayRouter } from './relay-router.js';

type Launch = Extract<ToFollower, { type: 'launch' }>;

export class FollowerLaunch {
  readonly id: number;
  private readonly workers = new Map<number, Worker>();
  private readonly exited = new Set<number>();
  private readonly router: RelayRouter;
  private readonly ranks: NodeRanks;
  readonly done: Promise<void>;

  /** `modelDir`: where this node's ranks read the model, when not at the leader's path. */
  constructor(m: Launch, private readonly toLeader: (m: ToLeader) => void, modelDir?: string) {
    this.id = m.launch;
    this.router = new RelayRouter((src, dst, data) => toLeader({ type: 'relay', launch: this.id, src, dst, data }));
    const inits = modelDir ? m.inits.map((i) => ({ ...i, model: { ...i.model, dir: modelDir } })) : m.inits;
    this.ranks = spawnNodeRanks(inits, m, this.router);
    let finish = () => {};
    this.done = new Promise((resolve) => (finish = resolve));
    this.ranks.workers.forEach((w, i) => this.watch(inits[i].rank, w, finish));
  }

  get active(): boolean {
    return this.exited.size < this.workers.size;
  }

  handle(m: ToFollower): void {
    if (m.type === 'run') for (const w of this.live()) w.postMessage({ type: 'run', id: m.id, batch: m.batch, ...(m.pick ? { pick: m.pick } : {}) });
    else if (m.type === 'post') this.workers.get(m.rank)?.postMessage(m.msg);
    else if (m.type === 'terminate') void this.workers.get(m.rank)?.terminate();
    else if (m.type === 'relay') this.router.deliver(m.src, m.dst, m.data);
    else if (m.type === 'abort') this.abort();
  }

  /** As the leader does for its own ranks: every rank stops communicating; NCCL ranks stuck in a collective get theirs aborted from here. */
  abort(): void {
    for (const w of this.live()) w.postMessage({ type: 'abort' });
    if (this.ranks.groups) void closeGroups(this.ranks.groups);
    const nccl = this.ranks.nccl;
    if (nccl) setTimeout(() => abortNcclGrid(nccl), ABORT_GRACE_MS).unref();
  }

  /** The leader is gone: stop every rank now. */
  async kill(): Promise<void> {
    this.abort();
    await Promise.all(this.live().map((w) => w.terminate()));
  }

  private live(): Worker[] {
    return [...this.workers.entries()].filter(([r]) => !this.exited.has(r)).map(([, w]) => w);
  }

  private watch(rank: number, w: Worker, finish: () => void): void {
    this.workers.set(rank, w);
    const launch = this.id;
    w.on('message', (reply: RankReply) => this.toLeader({ type: 'reply', launch, rank, reply }));
    w.on('error', (e) => this.toLeader({ type: 'rankError', launch, rank, message: e.message }));
    w.on('exit', (code) => {
      this.exited.add(rank);
      this.toLeader({ type: 'rankExit', launch, rank, code });
      if (this.active) return;
      this.router.close();
      void (this.ranks.groups ? closeGroups(this.ranks.groups) : Promise.resolve()).then(finish);
    });
  }
}
