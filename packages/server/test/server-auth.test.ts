// The API key on both transports: HTTP needs `Authorization: Bearer KEY` (401 otherwise); a WebSocket
// needs the same header or the `zinfer.auth.<base64url(KEY)>` subprotocol (close 1008 otherwise).
// /health, /metrics and the playground page stay open.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Engine } from '@zinfer/core';
import type { ZinferServer } from '../src/server.js';
import { AUTH_PROTOCOL_PREFIX, CLOSE, JSON_PROTOCOL, MSGPACK_PROTOCOL } from '../src/ws-protocol.js';
import { Conn, isDone, modelEngine, PROMPT, serve } from './helpers/server.js';

const KEY = 'sk-test-123';
let engine: Engine;
let server: ZinferServer;

test.before(async () => {
  engine = await modelEngine();
  server = await serve(engine, { apiKey: KEY });
});

test.after(async () => {
  await server.close();
  await engine.close();
});

const token = (key: string) => AUTH_PROTOCOL_PREFIX + Buffer.from(key).toString('base64url');

test('HTTP: a missing or wrong key is 401; the right bearer key passes', async () => {
  const body = JSON.stringify({ prompt: PROMPT, max_tokens: 2 });
  const none = await fetch(`${server.openaiUrl}/completions`, { method: 'POST', body });
  assert.is(none.status, 401);
  const err = (await none.json()) as { error: { code: string; param: string; type: string } };
  assert.equal([err.error.code, err.error.param, err.error.type], ['E_AUTH', 'authorization', 'authentication_error']);
  assert.is((await fetch(`${server.openaiUrl}/completions`, { method: 'POST', body, headers: { authorization: 'Bearer sk-wrong' } })).status, 401);
  assert.is((await fetch(`${server.openaiUrl}/models`, { headers: { authorization: `Basic ${KEY}` } })).status, 401);
  const ok = await fetch(`${server.openaiUrl}/completions`, { method: 'POST', body, headers: { authorization: `Bearer ${KEY}` } });
  assert.is(ok.status, 200);
  for (const open of ['health', 'metrics', '']) assert.is((await fetch(`${server.url}${open}`)).status, 200, `/${open} needs no key`);
});

test('WebSocket: no key or a wrong one closes with 1008 before any session', async () => {
  const none = await Conn.open(server.wsUrl);
  assert.is((await none.closed).code, CLOSE.unauthorized);
  assert.is(none.events.length, 0);
  const wrong = await Conn.open(server.wsUrl, { protocols: [JSON_PROTOCOL, token('nope')] });
  assert.is((await wrong.closed).code, CLOSE.unauthorized);
  const wrongHeader = await Conn.open(server.wsUrl, { headers: { authorization: 'Bearer nope' } });
  assert.is((await wrongHeader.closed).code, CLOSE.unauthorized);
});

test('WebSocket: the key as a subprotocol (either encoding) or as a bearer header gets a session', async () => {
  for (const [encoding, protocol] of [['json', JSON_PROTOCOL], ['msgpack', MSGPACK_PROTOCOL]] as const) {
    const c = await Conn.open(server.wsUrl, { encoding, protocols: [protocol, token(KEY)] });
    assert.is(c.ws.protocol, protocol, 'the server picks the encoding subprotocol, never echoes the key');
    c.send({ type: 'response.create', request_id: 'r', prompt: PROMPT, max_tokens: 2 });
    await c.waitFor(isDone('r'));
    await c.close();
  }
  const h = await Conn.open(server.wsUrl, { headers: { authorization: `Bearer ${KEY}` } });
  await h.waitFor((e) => e.type === 'session.created');
  await h.close();
  // Any key a browser can hold, non-ASCII included, travels base64url-encoded in the subprotocol.
  const s = await serve(engine, { apiKey: 'ключ/with+odd=chars' });
  try {
    const u = await Conn.open(s.wsUrl, { protocols: [JSON_PROTOCOL, token('ключ/with+odd=chars')] });
    await u.waitFor((e) => e.type === 'session.created');
    await u.close();
  } finally {
    await s.close();
  }
});

test.run();
