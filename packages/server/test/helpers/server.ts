// Shared by the server suites: the embedded default model on the reference backend (f32: fastest to
// run), a server on 127.0.0.1 with an OS-chosen port, raw WebSocket connections that record every
// event, and /metrics readers. Everything talks over real loopback sockets.
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { createEngine, type Engine, type EngineLimits } from '@zinfer/core';
import { referenceBackend } from '@zinfer/kernels/reference';
import { startServer, type ZinferServer } from '../../src/server.js';
import type { ServerOptions } from '../../src/server-options.js';
import { decodeFrame, encodeFrame } from '../../src/ws-codec.js';
import { JSON_PROTOCOL, MSGPACK_PROTOCOL, type Encoding, type ServerEvent } from '../../src/ws-protocol.js';

export const MODEL = resolve(fileURLToPath(import.meta.url), '../../../model');
export const PROMPT = 'The jury said that';

export function modelEngine(limits: EngineLimits = {}): Promise<Engine> {
  return createEngine({ model: MODEL, backend: referenceBackend(), dtype: 'f32', limits });
}

export async function serve(engine: Engine | Promise<Engine>, opts: Omit<ServerOptions, 'engine'> = {}): Promise<ZinferServer> {
  return startServer({ engine, host: '127.0.0.1', port: 0, modelName: 'zinfer-default', ...opts });
}

/** A raw WebSocket that keeps every decoded event, with waits on them. */
export class Conn {
  readonly events: ServerEvent[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket, readonly encoding: Encoding) {
    this.closed = new Promise((r) => ws.on('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.on('message', (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]);
      this.events.push(decodeFrame(encoding, isBinary ? buf : buf.toString('utf8')) as ServerEvent);
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('close', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static open(url: string, { encoding = 'json', protocols, headers, autoPong }: { encoding?: Encoding; protocols?: string[]; headers?: Record<string, string>; autoPong?: boolean } = {}): Promise<Conn> {
    // ws spreads its options over its defaults, so an undefined autoPong would turn pongs off.
    const ws = new WebSocket(url, protocols ?? [encoding === 'msgpack' ? MSGPACK_PROTOCOL : JSON_PROTOCOL], { ...(headers ? { headers } : {}), ...(autoPong === false ? { autoPong } : {}) });
    const c = new Conn(ws, encoding);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
    });
  }

  send(event: unknown): void {
    this.ws.send(encodeFrame(this.encoding, event));
  }

  sendRaw(data: string | Buffer, binary: boolean): void {
    this.ws.send(data, { binary });
  }

  /** Waits for the first event (from `from` on) matching `pred`; fails after timeoutMs. */
  async waitFor<T extends ServerEvent>(pred: (e: ServerEvent) => e is T, timeoutMs?: number, from?: number): Promise<T>;
  async waitFor(pred: (e: ServerEvent) => boolean, timeoutMs?: number, from?: number): Promise<ServerEvent>;
  async waitFor(pred: (e: ServerEvent) => boolean, timeoutMs = 10_000, from = 0): Promise<ServerEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(from).find(pred);
      if (hit) return hit;
      if (this.ws.readyState >= WebSocket.CLOSING) throw new Error(`connection closed while waiting; events: ${JSON.stringify(this.events).slice(0, 500)}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting; events: ${JSON.stringify(this.events).slice(-500)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  /** The `response.done` or `error` that ends request `id`. */
  end(id: string, timeoutMs?: number): Promise<ServerEvent> {
    return this.waitFor((e) => (e.type === 'response.done' || e.type === 'error') && e.request_id === id, timeoutMs);
  }

  /** The text deltas of request `id`, joined, checking that indices run 0, 1, 2... */
  text(id: string): { text: string; indices: number[] } {
    const deltas = this.events.filter((e) => e.type === 'response.text.delta' && e.request_id === id) as Extract<ServerEvent, { type: 'response.text.delta' }>[];
    return { text: deltas.map((d) => d.delta).join(''), indices: deltas.map((d) => d.index) };
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close();
    return this.closed;
  }
}

export const isDone = (id: string) => (e: ServerEvent): e is Extract<ServerEvent, { type: 'response.done' }> => e.type === 'response.done' && e.request_id === id;
export const isError = (id: string | null) => (e: ServerEvent): e is Extract<ServerEvent, { type: 'error' }> => e.type === 'error' && e.request_id === id;

/** One metric's value from /metrics (the sum over label sets when `labels` is omitted). */
export async function metric(server: ZinferServer, name: string, labels?: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${server.url}metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z0-9_:]+)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (labels && !Object.entries(labels).every(([k, v]) => (m[3] ?? '').includes(`${k}="${v}"`))) continue;
    sum += Number(m[4]);
  }
  return sum;
}

/** Polls until fn() holds (the engine frees blocks at its next step boundary). */
export async function eventually(fn: () => Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const ROOT = join(MODEL, '../../..');
