// The leader's view of the other node processes: it serves the node store on MASTER_PORT (one per port per
// process, kept across launches so an engine can be restarted), admits each follower's hello once, and
// waits for all WORLD_SIZE - 1 followers before a launch. A follower that left may join again (a restarted
// node); one that is still connected may not be joined twice.
import { BackendError, ConfigError } from '@zinfer/core';
import { leaderAddress, type NodeOptions } from './env.js';
import { TcpStoreServer, type Hello, type StorePeer } from './tcp-store.js';

const leaders = new Map<number, Promise<NodeLeader>>();

export class NodeLeader {
  private readonly peers = new Map<number, StorePeer>();

  private constructor(readonly options: NodeOptions, private server: TcpStoreServer | null) {}

  /** The leader serving o.masterPort in this process, started on first use. */
  static for(o: NodeOptions): Promise<NodeLeader> {
    let leader = leaders.get(o.masterPort);
    if (!leader) {
      leader = NodeLeader.start(o);
      leaders.set(o.masterPort, leader);
      leader.catch(() => leaders.delete(o.masterPort));
    }
    return leader.then((l) => {
      if (l.options.worldSize !== o.worldSize) throw new ConfigError(`the leader on port ${o.masterPort} already serves ${l.options.worldSize} nodes`, { field: 'WORLD_SIZE', expected: String(l.options.worldSize), found: String(o.worldSize) });
      return l;
    });
  }

  /** Stops every leader of this process (tests; a process that exits needs no call). */
  static async closeAll(): Promise<void> {
    const all = [...leaders.values()];
    leaders.clear();
    for (const l of all) await (await l.catch(() => null))?.close();
  }

  private static async start(o: NodeOptions): Promise<NodeLeader> {
    if (o.rank !== 0) throw new ConfigError('only RANK 0 launches the plan; other nodes run as followers', { field: 'RANK', expected: '0 for the process that runs the engine', found: String(o.rank) });
    const leader = new NodeLeader(o, null);
    // Every interface unless MASTER_ADDR is a loopback address, so that remote nodes can reach the leader.
    const host = /^(127\.|localhost$|::1$)/.test(o.masterAddr) ? o.masterAddr : undefined;
    leader.server = await TcpStoreServer.listen({ port: o.masterPort, host, heartbeatTimeoutMs: o.heartbeatTimeoutMs, token: o.token, admit: (h) => leader.admit(h) });
    leader.server.on('peer', (p) => leader.join(p));
    return leader;
  }

  get store(): TcpStoreServer {
    return this.server!;
  }

  /** Every follower (node 1 .. WORLD_SIZE - 1), once each has joined; a BackendError naming the missing node after the join timeout. */
  async followers(): Promise<StorePeer[]> {
    const { worldSize, joinTimeoutMs = 60_000 } = this.options;
    const deadline = Date.now() + joinTimeoutMs;
    const peers: StorePeer[] = [];
    for (let node = 1; node < worldSize; node++) {
      try {
        await this.store.store.get(`node/${node}`, Math.max(1, deadline - Date.now()));
      } catch {
        throw new BackendError(`node ${node} did not join ${leaderAddress(this.options)} within ${joinTimeoutMs / 1000} s`, {
          field: 'WORLD_SIZE', expected: `${worldSize} node processes (start each with RANK and the same MASTER_ADDR:MASTER_PORT)`, found: `nodes joined: 0${[...this.peers.keys()].map((k) => `, ${k}`).join('')}`,
        });
      }
      peers.push(this.peers.get(node)!);
    }
    return peers;
  }

  async close(): Promise<void> {
    await this.server?.close();
  }

  private admit(h: Hello): string | null {
    const { worldSize } = this.options;
    if (h.worldSize !== worldSize) return `node ${h.node} was started for ${h.worldSize} nodes, the leader for ${worldSize} (WORLD_SIZE)`;
    if (!(h.node >= 1 && h.node < worldSize)) return `node rank ${h.node} is outside 1..${worldSize - 1} (RANK)`;
    const old = this.peers.get(h.node);
    if (old?.conn.open) return `node ${h.node} has already joined from ${old.hello.host}`;
    return null;
  }

  private join(peer: StorePeer): void {
    const node = peer.hello.node;
    this.peers.set(node, peer);
    peer.on('close', () => {
      if (this.peers.get(node) !== peer) return;
      this.peers.delete(node);
      void this.store.store.delete(`node/${node}`);
    });
    void this.store.store.set(`node/${node}`, peer.hello);
  }
}
