// The load of `npm run bench:serve`: N concurrent WebSocket streams (one connection each, through the
// typed client) on loopback, every one checked token by token: indices must run 0..max_tokens-1 with
// none lost, duplicated or out of order, and the deltas must join into response.done's text.
import WebSocket from 'ws';
import { connect, type ZinferClient } from './client.js';
import type { Encoding } from './ws-protocol.js';

export interface LoadParams {
  url: string;
  streams: number;
  tokens: number;
  prompt: string;
  encoding: Encoding;
  temperature: number;
}

export interface StreamResult {
  received: number;
  lost: number;
  duplicated: number;
  reordered: number;
  textMismatch: boolean;
  ttftMs: number;
  itlMs: number[];
  startedAt: number;
  endedAt: number;
}

export interface LoadResult {
  streams: StreamResult[];
  /** Tokens received by all streams ÷ (last stream's end − first stream's start). */
  tokensPerS: number;
}

export async function runLoad(p: LoadParams): Promise<LoadResult> {
  const clients = await Promise.all(Array.from({ length: p.streams }, () => connect({ url: p.url, encoding: p.encoding, WebSocket })));
  try {
    // Every connection is open before the first request: the streams start together.
    const streams = await Promise.all(clients.map((c, i) => oneStream(c, p, i)));
    const start = Math.min(...streams.map((s) => s.startedAt));
    const end = Math.max(...streams.map((s) => s.endedAt));
    const tokens = streams.reduce((n, s) => n + s.received, 0);
    return { streams, tokensPerS: tokens / ((end - start) / 1000) };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

async function oneStream(client: ZinferClient, p: LoadParams, seed: number): Promise<StreamResult> {
  const startedAt = performance.now();
  const gen = client.generate({ prompt: p.prompt, max_tokens: p.tokens, temperature: p.temperature, seed, ignore_eos: true });
  const seen = new Set<number>();
  const itlMs: number[] = [];
  let first = 0;
  let last = 0;
  let prev = -1;
  let received = 0;
  let duplicated = 0;
  let reordered = 0;
  let text = '';
  for await (const ev of gen.events()) {
    const now = performance.now();
    if (received === 0) first = now;
    else itlMs.push(now - last);
    last = now;
    received++;
    if (seen.has(ev.index)) duplicated++;
    else if (ev.index < prev) reordered++; // arrived after a later token
    seen.add(ev.index);
    prev = Math.max(prev, ev.index);
    text += ev.delta;
  }
  const done = await gen.done;
  let lost = 0;
  for (let i = 0; i < p.tokens; i++) if (!seen.has(i)) lost++;
  return { received, lost, duplicated, reordered, textMismatch: text !== done.text, ttftMs: first - startedAt, itlMs, startedAt, endedAt: performance.now() };
}

export function percentile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
