// The leader's stand-ins for the ranks of one follower node in one launch: each is a RankLink (the same
// events as a Worker), so rank-program.ts treats local and remote ranks alike. Requests travel as control
// messages on the node's connection; a step's batch goes once per node. When the connection closes or goes
// silent, every rank of the node fails and exits with an error naming the node and its ranks.
import { EventEmitter } from 'node:events';
import { BackendError, type StepBatch } from '@zinfer/core';
import type { RankReply, RankRequest } from '../rank-worker.js';
import type { ToFollower, ToLeader } from './messages.js';
import type { RelayRouter } from './relay-router.js';
import type { StorePeer } from './tcp-store.js';

export class RemoteRank extends EventEmitter<{ message: [RankReply]; error: [Error]; exit: [number] }> {
  exited = false;

  constructor(private readonly node: RemoteNode, readonly rank: number) {
    super();
    this.once('exit', () => (this.exited = true));
  }

  postMessage(m: RankRequest): void {
    this.node.post(this.rank, m);
  }

  terminate(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      this.once('exit', () => resolve());
      this.node.send({ type: 'terminate', launch: this.node.launch, rank: this.rank });
    });
  }
}

export class RemoteNode {
  readonly ranks: RemoteRank[];
  /** The last step batch sent: the launcher posts each to every rank, the node gets it once. */
  private lastRun = 0;
  private readonly onMessage = (m: unknown) => this.receive(m as ToLeader);
  private readonly onClose = (why: BackendError | null) => this.lost(why?.message ?? 'the connection was closed');
  private readonly release: () => void;

  constructor(private readonly peer: StorePeer, readonly launch: number, ranks: readonly number[], private readonly router: RelayRouter) {
    this.ranks = ranks.map((r) => new RemoteRank(this, r));
    this.release = peer.hold();
    peer.on('message', this.onMessage);
    peer.on('close', this.onClose);
    if (!peer.conn.open) queueMicrotask(() => this.onClose(null));
  }

  get name(): string {
    return `node ${this.peer.hello.node} (rank${this.ranks.length > 1 ? 's' : ''} ${this.ranks.map((r) => r.rank).join(', ')} on ${this.peer.hello.host})`;
  }

  send(m: ToFollower): void {
    this.peer.send(m);
  }

  post(rank: number, msg: RankRequest): void {
    if (msg.type !== 'run') return this.send({ type: 'post', launch: this.launch, rank, msg });
    if (msg.id === this.lastRun) return;
    this.lastRun = msg.id;
    this.send({ type: 'run', launch: this.launch, id: msg.id, batch: msg.batch as StepBatch, ...(msg.pick ? { pick: msg.pick } : {}) });
  }

  /** Stops the launch: the follower posts 'abort' to its ranks and closes its groups. */
  abort(): void {
    this.send({ type: 'abort', launch: this.launch });
  }

  /** Stops listening to the connection once every rank of the node has exited (the launch is over). */
  detach(): void {
    const pending = this.ranks.filter((r) => !r.exited);
    let left = pending.length;
    const off = () => {
      this.peer.off('message', this.onMessage);
      this.peer.off('close', this.onClose);
      this.release();
    };
    if (left === 0) return off();
    for (const r of pending) r.once('exit', () => --left === 0 && off());
  }

  private receive(m: ToLeader): void {
    if (m.launch !== this.launch) return;
    if (m.type === 'relay') return this.router.deliver(m.src, m.dst, m.data);
    const rank = this.ranks.find((r) => r.rank === m.rank);
    if (!rank || rank.exited) return;
    if (m.type === 'reply') rank.emit('message', m.reply);
    else if (m.type === 'rankError') rank.emit('error', new Error(m.message));
    else rank.emit('exit', m.code);
  }

  private lost(why: string): void {
    const e = new BackendError(`${this.name} was lost: ${why}`, { field: 'node', expected: 'a live node process', found: why });
    for (const r of this.ranks) {
      if (r.exited) continue;
      r.emit('error', e);
      r.emit('exit', 1);
    }
  }
}
