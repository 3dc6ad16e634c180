// @zinfer/server/client: a typed client of the WebSocket protocol for Node and browsers. It imports no
// Node module (test/client-imports.test.ts checks), takes the WebSocket class from the platform or the
// caller (Node 20 has none built in: pass `WebSocket` from 'ws'), speaks JSON or MessagePack frames,
// and runs many generations over one connection, each an async iterator over its text deltas.
import { Generation, type GenerateOptions, type GenerateParams } from './client-generation.js';
import { ZinferClientError } from './client-error.js';
import { decodeFrame, encodeFrame } from './ws-codec.js';
import { AUTH_PROTOCOL_PREFIX, CLOSE, JSON_PROTOCOL, MSGPACK_PROTOCOL, WS_PATH, type Encoding, type ServerEvent, type SessionCreatedEvent } from './ws-protocol.js';

export { Generation, ZinferClientError, type GenerateOptions, type GenerateParams };
export type * from './ws-protocol.js';
export { CLOSE, JSON_PROTOCOL, MSGPACK_PROTOCOL, WS_PATH } from './ws-protocol.js';

/** The part of the WebSocket API the client uses (the browser's, Node 22's and the ws package's all have it). */
interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** A WebSocket class: globalThis.WebSocket in browsers and Node >= 22, `WebSocket` from 'ws' elsewhere. */
export type WebSocketClass = new (url: string, protocols?: string | string[]) => object;

export interface ConnectOptions {
  /** ws://host:port/v1/ws, or the server's http(s)://host:port (the WebSocket path is added). */
  url: string;
  /** The server's API key, sent as the `zinfer.auth.<base64url>` subprotocol (works in browsers too). */
  apiKey?: string;
  /** Frame encoding: 'json' (text frames, default) or 'msgpack' (binary frames). */
  encoding?: Encoding;
  WebSocket?: WebSocketClass;
  /** Aborts connecting. */
  signal?: AbortSignal;
}

export type SessionInfo = SessionCreatedEvent['session'];

const OPEN = 1;

export class ZinferClient {
  /** Resolves when the connection has closed, with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly pending = new Map<string, Generation>();
  private nextId = 1;

  private constructor(private readonly ws: WebSocketLike, readonly session: SessionInfo, closed: Promise<{ code: number; reason: string }>) {
    this.closed = closed;
  }

  /** Opens a connection and waits for the server's session.created. */
  static connect(opts: ConnectOptions): Promise<ZinferClient> {
    const Ctor = (opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketClass }).WebSocket) as (new (url: string, protocols?: string[]) => WebSocketLike) | undefined;
    if (!Ctor) return Promise.reject(new ZinferClientError('no WebSocket class here: pass { WebSocket } (in Node < 22: import WebSocket from "ws")', { code: 'E_CONFIG', param: 'WebSocket' }));
    const encoding = opts.encoding ?? 'json';
    const protocols = [encoding === 'msgpack' ? MSGPACK_PROTOCOL : JSON_PROTOCOL];
    if (opts.apiKey !== undefined) protocols.push(AUTH_PROTOCOL_PREFIX + base64url(opts.apiKey));
    const ws = new Ctor(wsUrl(opts.url), protocols);
    ws.binaryType = 'arraybuffer';
    return new Promise((resolve, reject) => {
      let client: ZinferClient | null = null;
      let settleClosed: (c: { code: number; reason: string }) => void = () => {};
      const closed = new Promise<{ code: number; reason: string }>((r) => (settleClosed = r));
      const onAbort = () => ws.close(CLOSE.normal, 'aborted');
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      ws.onmessage = (m) => {
        const ev = decodeFrame(encoding, toFrame(m.data)) as ServerEvent;
        if (client) return client.dispatch(ev);
        if (ev.type === 'session.created') {
          opts.signal?.removeEventListener('abort', onAbort);
          client = new ZinferClient(ws, ev.session, closed);
          resolve(client);
        }
      };
      ws.onclose = (c) => {
        settleClosed({ code: c.code, reason: c.reason });
        if (client) return client.failAll(c.code, c.reason);
        reject(opts.signal?.aborted ? opts.signal.reason : closeError(c.code, c.reason));
      };
      ws.onerror = () => {}; // the close event that follows carries the code
    });
  }

  /** Starts a generation; iterate it for text deltas, or await its `done`. */
  generate(params: GenerateParams, options: GenerateOptions = {}): Generation {
    const id = params.request_id ?? `c${this.nextId++}`;
    const gen = new Generation(id, () => this.send({ type: 'response.cancel', request_id: id }), options.signal);
    if (this.pending.has(id)) throw new ZinferClientError(`request_id ${id} is already in flight`, { code: 'E_PROTOCOL', param: 'request_id' });
    if (options.signal?.aborted) return gen;
    this.pending.set(id, gen);
    this.send({ ...params, type: 'response.create', request_id: id });
    return gen;
  }

  /** Requests in flight on this connection. */
  get inFlight(): number {
    return this.pending.size;
  }

  close(code: number = CLOSE.normal, reason = ''): Promise<{ code: number; reason: string }> {
    this.ws.close(code, reason);
    return this.closed;
  }

  private send(event: object): void {
    if (this.ws.readyState === OPEN) this.ws.send(encodeFrame(this.session.encoding, event));
  }

  private dispatch(ev: ServerEvent): void {
    if (ev.type === 'session.created') return;
    const gen = ev.request_id === null ? undefined : this.pending.get(ev.request_id);
    if (!gen) return;
    if (ev.type === 'response.done' || ev.type === 'error') this.pending.delete(ev.request_id!);
    gen.receive(ev);
  }

  private failAll(code: number, reason: string): void {
    for (const gen of this.pending.values()) gen.fail(closeError(code, reason));
    this.pending.clear();
  }
}

/** Shorthand for ZinferClient.connect. */
export function connect(opts: ConnectOptions): Promise<ZinferClient> {
  return ZinferClient.connect(opts);
}

function wsUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = WS_PATH;
  return u.toString();
}

function closeError(code: number, reason: string): ZinferClientError {
  const what = code === CLOSE.unauthorized ? 'E_AUTH' : code === CLOSE.tryAgainLater ? 'E_NOT_READY' : 'E_CLOSED';
  return new ZinferClientError(`connection closed (${code}${reason ? `: ${reason}` : ''})`, { code: what, closeCode: code });
}

function toFrame(data: unknown): string | Uint8Array {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new ZinferClientError('unexpected frame data', { code: 'E_PROTOCOL' });
}

function base64url(s: string): string {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}
