// The node store on node:net, in the spirit of torch's TCPStore: RANK 0 serves a MemoryStore on
// MASTER_PORT; each follower connects, receives a challenge, says hello (its node rank, facts about it, the
// answer to the challenge and its own: node-auth.ts; the follower's side is store-join.ts) and, welcomed,
// reaches the store with requests ('req' → 'res') and exchanges control messages with the leader ('msg')
// on the same connection. A connection that breaks the protocol or fails the token check is closed with a
// BackendError; the server goes on.
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { BackendError } from '@zinfer/core';
import { FramedConnection, type Frame } from './frames.js';
import { MemoryStore, type KeyValueStore } from './kv-store.js';
import { authRefusal, isNonce, newNonce, nodeProof, NODE_TOKEN_ENV } from './node-auth.js';
import { connectWithRetry, joinLeader } from './store-join.js';

/** What a follower says first: its node rank, the run size it was started for, and facts for the leader. */
export interface Hello {
  node: number;
  worldSize: number;
  /** Visible CUDA devices (0 without a driver) and the host name, for the leader's checks and messages. */
  devices: number;
  host: string;
}

type Request = { op: 'set'; key: string; value: unknown } | { op: 'get'; key: string; timeoutMs?: number } | { op: 'add'; key: string; n: number } | { op: 'delete'; key: string };

/** One follower's connection, on the leader. Events: 'message' (a control message), 'close' (why). */
export class StorePeer extends EventEmitter<{ message: [unknown]; close: [BackendError | null] }> {
  private holds = 0;

  constructor(readonly hello: Hello, readonly conn: FramedConnection) {
    super();
  }

  /**
   * Keeps the leader's process alive while ranks of this node are live, as a running Worker does (the
   * socket is unref'd otherwise, and a leader disposing its program would exit before the node's ranks have
   * answered). Returns the release.
   */
  hold(): () => void {
    if (this.holds++ === 0) this.conn.socket.ref();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      if (--this.holds === 0) this.conn.socket.unref();
    };
  }

  send(body: unknown): void {
    this.conn.send({ t: 'msg', body });
  }
}

export interface StoreServerOptions {
  port: number;
  host?: string;
  heartbeatTimeoutMs?: number;
  /** Why a hello is refused, or null to admit it. */
  admit: (hello: Hello) => string | null;
  /** The run's shared secret (ZINFER_NODE_TOKEN), or null/undefined to run without one (trusted networks). */
  token?: string | null;
  /** Connections closed for breaking the protocol, for logs and tests. */
  onBadPeer?: (e: BackendError) => void;
}

export class TcpStoreServer extends EventEmitter<{ peer: [StorePeer] }> {
  readonly store = new MemoryStore();
  private readonly conns = new Set<FramedConnection>();

  private constructor(private readonly server: Server, private readonly o: StoreServerOptions) {
    super();
    server.on('connection', (s) => this.accept(s));
  }

  static listen(o: StoreServerOptions): Promise<TcpStoreServer> {
    const server = createServer();
    return new Promise((resolve, reject) => {
      server.once('error', (e) => reject(new BackendError(`cannot listen on ${o.host ?? '0.0.0.0'}:${o.port} for the other nodes: ${e.message}`, { field: 'MASTER_PORT', expected: 'a free port', found: String(o.port) })));
      server.listen(o.port, o.host, () => {
        server.unref(); // the engine, not the store, decides how long the leader's process lives
        resolve(new TcpStoreServer(server, o));
      });
    });
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    socket.unref();
    const conn = new FramedConnection(socket, `a node connecting from ${socket.remoteAddress}:${socket.remotePort}`, this.o.heartbeatTimeoutMs);
    this.conns.add(conn);
    let peer: StorePeer | null = null;
    const nonce = newNonce();
    conn.send({ t: 'challenge', nonce });
    conn.on('close', (why) => {
      this.conns.delete(conn);
      if (why && !peer) this.o.onBadPeer?.(why);
      peer?.emit('close', why);
    });
    conn.on('frame', (f) => {
      if (!peer) {
        const token = this.o.token ?? null;
        const auth = f.t === 'hello' && isHello(f.hello) && isNonce(f.nonce) ? authRefusal(token, 'follower', nonce, f.proof, `node ${f.hello.node}`) : null;
        const refused = f.t !== 'hello' ? `expected a hello, found a '${f.t}' frame`
          : !isHello(f.hello) || !isNonce(f.nonce) ? 'a malformed hello'
          : auth ?? this.o.admit(f.hello);
        if (refused) {
          const field = auth ? NODE_TOKEN_ENV : 'RANK';
          conn.send({ t: 'refused', reason: refused, field });
          return conn.close(new BackendError(`refused ${conn.peer}: ${refused}`, { field }));
        }
        const hello = f.hello as Hello;
        conn.peer = `node ${hello.node} (${hello.host}, ${socket.remoteAddress}:${socket.remotePort})`;
        peer = new StorePeer(hello, conn);
        conn.send({ t: 'welcome', proof: token === null ? null : nodeProof(token, 'leader', f.nonce as string) });
        return void this.emit('peer', peer);
      }
      if (f.t === 'msg') return void peer.emit('message', f.body);
      if (f.t === 'req') return void this.serve(conn, f);
      conn.close(new BackendError(`bad frame from ${conn.peer}: unknown type '${f.t}'`));
    });
  }

  private async serve(conn: FramedConnection, f: Frame): Promise<void> {
    const r = f.req as Request;
    try {
      const value = r.op === 'set' ? await this.store.set(r.key, r.value) : r.op === 'get' ? await this.store.get(r.key, r.timeoutMs) : r.op === 'add' ? await this.store.add(r.key, r.n) : await this.store.delete(r.key);
      conn.send({ t: 'res', id: f.id, value });
    } catch (e) {
      conn.send({ t: 'res', id: f.id, error: (e as Error).message });
    }
  }
}

export interface ConnectOptions {
  addr: string;
  port: number;
  hello: Hello;
  /** How long to keep trying while the leader is not up yet (default 60 000 ms). */
  timeoutMs?: number;
  heartbeatTimeoutMs?: number;
  /** The run's shared secret (ZINFER_NODE_TOKEN), or null/undefined to run without one. */
  token?: string | null;
}

/** A follower's connection to the leader's store. Events: 'message' (control), 'close' (why; null when closed here). */
export class TcpStoreClient extends EventEmitter<{ message: [unknown]; close: [BackendError | null] }> implements KeyValueStore {
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  /** `early`: frames that came in behind the welcome, before this object listened. */
  private constructor(readonly conn: FramedConnection, early: Frame[]) {
    super();
    conn.on('frame', (f) => this.receive(f));
    // After the caller's await has resumed (a microtask would run before it): by then it listens for 'message'.
    setImmediate(() => early.forEach((f) => this.receive(f)));
    conn.on('close', (why) => {
      for (const c of this.calls.values()) c.reject(why ?? new BackendError('the store connection was closed'));
      this.calls.clear();
      this.emit('close', why);
    });
  }

  static async connect(o: ConnectOptions): Promise<TcpStoreClient> {
    const timeoutMs = o.timeoutMs ?? 60_000;
    const where = `${o.addr}:${o.port}`;
    const socket = await connectWithRetry(o.addr, o.port, Date.now() + timeoutMs, `node ${o.hello.node} could not reach the leader (RANK 0) at MASTER_ADDR:MASTER_PORT ${where} within ${timeoutMs / 1000} s`);
    const conn = new FramedConnection(socket, `the leader at ${where}`, o.heartbeatTimeoutMs);
    const early = await joinLeader(conn, o.hello, o.token ?? null, where);
    return new TcpStoreClient(conn, early);
  }

  send(body: unknown): void {
    this.conn.send({ t: 'msg', body });
  }

  private receive(f: Frame): void {
    if (f.t === 'msg') return void this.emit('message', f.body);
    const call = f.t === 'res' ? this.calls.get(f.id as number) : undefined;
    if (!call) return this.conn.close(new BackendError(`bad frame from ${this.conn.peer}: unexpected '${f.t}'`));
    this.calls.delete(f.id as number);
    if (typeof f.error === 'string') call.reject(new BackendError(f.error));
    else call.resolve(f.value);
  }

  close(): void {
    this.conn.close();
  }

  set(key: string, value: unknown): Promise<void> {
    return this.call({ op: 'set', key, value }) as Promise<void>;
  }

  get(key: string, timeoutMs?: number): Promise<unknown> {
    return this.call({ op: 'get', key, timeoutMs });
  }

  add(key: string, n: number): Promise<number> {
    return this.call({ op: 'add', key, n }) as Promise<number>;
  }

  delete(key: string): Promise<void> {
    return this.call({ op: 'delete', key }) as Promise<void>;
  }

  private call(req: Request): Promise<unknown> {
    if (!this.conn.open) return Promise.reject(new BackendError(`the connection to ${this.conn.peer} is closed`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.conn.send({ t: 'req', id, req });
    });
  }
}

function isHello(h: unknown): h is Hello {
  const o = h as Hello | null;
  return typeof o === 'object' && o !== null && [o.node, o.worldSize, o.devices].every(Number.isInteger) && typeof o.host === 'string';
}
