// What startServer() takes, its defaults and its validation. Limits keep one client from exhausting the
// server: payload size, requests in flight (per connection and in total), prompt and output tokens, and
// how much unsent output a slow reader may leave behind before its requests pause and then its
// connection closes.
import { ConfigError, type Engine } from '@zinfer/core';
import type { MoeReplanner } from './moe-replan.js';

export interface ServerLimits {
  /** Largest request body or WebSocket message (default 1 MiB). WebSocket frames up to 4× this get an
   * `error` event and the connection keeps serving; larger ones are cut off by ws with close code 1009. */
  maxPayloadBytes: number;
  /** Requests in flight on one WebSocket connection (default 64). */
  maxRequestsPerConnection: number;
  /** Requests in flight on the whole server (default 1024). */
  maxRequests: number;
  /** Longest prompt in tokens (default: the engine's context - 1). */
  maxPromptTokens: number | null;
  /** Largest max_tokens a request may ask for (default: the engine's context). */
  maxOutputTokens: number | null;
  /** Unsent output a connection may hold before its requests pause (default 1 MiB). */
  maxBufferedBytes: number;
  /** How long output may stay paused on a slow reader before the connection closes (default 30 s). */
  slowReaderTimeoutMs: number;
  /** WebSocket ping interval; a client that misses a pong is dropped (default 30 s; 0 = off). */
  heartbeatMs: number;
}

export interface ServerOptions extends Partial<ServerLimits> {
  /** The engine, or the promise of one: /health answers 503 and the APIs refuse until it resolves. */
  engine: Engine | Promise<Engine>;
  /** Interface to listen on (default 127.0.0.1: only this machine). */
  host?: string;
  /** Port (default 8080; 0 picks a free one). */
  port?: number;
  /** When set, /v1/* and the WebSocket need it (Authorization: Bearer, or the auth subprotocol). */
  apiKey?: string;
  /** Model id reported by /v1/models and accepted in requests' `model` field (default "zinfer"). */
  modelName?: string;
  /** The expert-parallel engine's replanner (@zinfer/moe expertReplanner): enables POST /admin/moe/replan. */
  moe?: MoeReplanner;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxPayloadBytes: 1 << 20,
  maxRequestsPerConnection: 64,
  maxRequests: 1024,
  maxPromptTokens: null,
  maxOutputTokens: null,
  maxBufferedBytes: 1 << 20,
  slowReaderTimeoutMs: 30_000,
  heartbeatMs: 30_000,
};

export interface ResolvedOptions {
  host: string;
  port: number;
  apiKey: string | undefined;
  modelName: string;
  limits: ServerLimits;
}

const KNOWN = new Set(['engine', 'host', 'port', 'apiKey', 'modelName', 'moe', ...Object.keys(DEFAULT_LIMITS)]);

export function resolveOptions(o: ServerOptions): ResolvedOptions {
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) throw new ConfigError(`unknown server option ${k}`, { field: `server.${k}`, expected: [...KNOWN].join(', '), found: k });
  }
  const limits = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(DEFAULT_LIMITS) as (keyof ServerLimits)[]) {
    const v = o[k];
    if (v === undefined || v === null) continue;
    const min = k === 'heartbeatMs' || k === 'slowReaderTimeoutMs' ? 0 : 1;
    if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(`invalid server option ${k}`, { field: `server.${k}`, expected: `an integer >= ${min}`, found: String(v) });
    limits[k] = v;
  }
  const port = o.port ?? 8080;
  if (!Number.isSafeInteger(port) || port < 0 || port > 65535) throw new ConfigError('invalid port', { field: 'server.port', expected: 'an integer in [0, 65535]', found: String(port) });
  if (o.apiKey !== undefined && (typeof o.apiKey !== 'string' || o.apiKey.length === 0)) throw new ConfigError('invalid API key', { field: 'server.apiKey', expected: 'a non-empty string', found: typeof o.apiKey });
  return { host: o.host ?? '127.0.0.1', port, apiKey: o.apiKey, modelName: o.modelName ?? 'zinfer', limits };
}
