// Every malformed input gets an `error` event (WebSocket) or an HTTP 4xx naming the problem, and the same
// connection and server keep serving: not JSON, wrong field types, unknown events and fields, oversized
// frames and bodies, binary garbage, prompts and max_tokens over the limits, too many requests.
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Engine } from '@zinfer/core';
import type { ZinferServer } from '../src/server.js';
import type { ServerEvent } from '../src/ws-protocol.js';
import { Conn, isDone, metric, modelEngine, PROMPT, serve } from './helpers/server.js';

type ErrorEv = Extract<ServerEvent, { type: 'error' }>;

let engine: Engine;
let server: ZinferServer;
const LIMITS = { maxPayloadBytes: 4096, maxPromptTokens: 32, maxOutputTokens: 64, maxRequestsPerConnection: 2 };

test.before(async () => {
  engine = await modelEngine();
  server = await serve(engine, LIMITS);
});

test.after(async () => {
  await server.close();
  await engine.close();
});

/** Sends one bad frame and returns the error event it caused (the n-th error on this connection). */
async function errorFor(c: Conn, send: () => void): Promise<ErrorEv> {
  const from = c.events.length;
  send();
  return (await c.waitFor((e) => e.type === 'error', 5000, from)) as ErrorEv;
}

function expectError(e: ErrorEv, param: string | null, code: string, message?: RegExp | string): void {
  assert.is(e.error.param, param, JSON.stringify(e));
  assert.is(e.error.code, code, JSON.stringify(e));
  if (message) assert.match(e.error.message, message);
}

test('JSON connection: each malformed frame gets an error naming the problem; the connection keeps serving', async () => {
  const c = await Conn.open(server.wsUrl);
  await c.waitFor((e) => e.type === 'session.created');
  const bad: [() => void, string | null, string, string | RegExp, string | null][] = [
    [() => c.sendRaw('{"type": "response.create", prompt', false), 'frame', 'E_PROTOCOL', 'not valid JSON', null],
    [() => c.sendRaw('[1, 2, 3]', false), 'type', 'E_PROTOCOL', 'one event object', null],
    [() => c.send({ prompt: 'no type' }), 'type', 'E_PROTOCOL', 'no type', null],
    [() => c.send({ type: 'session.update', request_id: 'u' }), 'type', 'E_PROTOCOL', 'unknown event type', 'u'],
    [() => c.send({ type: 'response.create', request_id: 't1', prompt: 5 }), 'prompt', 'E_REQUEST', 'prompt', 't1'],
    [() => c.send({ type: 'response.create', request_id: 't2', prompt: PROMPT, max_tokens: 'ten' }), 'max_tokens', 'E_REQUEST', 'max_tokens', 't2'],
    [() => c.send({ type: 'response.create', request_id: 't3', prompt: PROMPT, temperature: -1 }), 'temperature', 'E_REQUEST', 'temperature', 't3'],
    [() => c.send({ type: 'response.create', request_id: 't4', prompt: PROMPT, top_p: 2 }), 'top_p', 'E_REQUEST', 'top_p', 't4'],
    [() => c.send({ type: 'response.create', request_id: 't5', messages: [{ role: 'user' }] }), 'messages[0].content', 'E_REQUEST', 'messages', 't5'],
    [() => c.send({ type: 'response.create', request_id: 't6', prompt: PROMPT, colour: 'red' }), 'colour', 'E_REQUEST', 'unknown field colour', 't6'],
    [() => c.send({ type: 'response.create', request_id: 't7', prompt: PROMPT, input_ids: [1] }), 'prompt', 'E_REQUEST', 'exactly one', 't7'],
    [() => c.send({ type: 'response.create', request_id: 't8', input_ids: [1, 99999] }), 'input_ids', 'E_REQUEST', 'vocabulary', 't8'],
    [() => c.send({ type: 'response.create', request_id: 't9', prompt: 'word '.repeat(200) }), 'prompt', 'E_LIMIT', 'over the server limit', 't9'],
    [() => c.send({ type: 'response.create', request_id: 't10', prompt: PROMPT, max_tokens: 65 }), 'max_tokens', 'E_LIMIT', 'over the server limit', 't10'],
    [() => c.send({ type: 'response.cancel', request_id: 'nobody' }), 'request_id', 'E_PROTOCOL', 'no request in flight', 'nobody'],
    [() => c.send({ type: 'response.cancel' }), 'request_id', 'E_PROTOCOL', 'request_id', null],
    [() => c.sendRaw(JSON.stringify({ type: 'response.create', prompt: 'x'.repeat(5000) }), false), 'frame', 'E_LIMIT', 'payload limit', null],
    [() => c.sendRaw(randomBytes(64), true), 'frame', 'E_PROTOCOL', 'binary frame on a JSON connection', null],
    [() => c.sendRaw(Buffer.from([0xff, 0xfe, 0x7b]), false), 'frame', 'E_PROTOCOL', 'not valid JSON', null],
  ];
  for (const [send, param, code, message, requestId] of bad) {
    const e = await errorFor(c, send);
    expectError(e, param, code, message);
    assert.is(e.request_id, requestId, `request_id of ${e.error.message}`);
  }
  c.send({ type: 'response.create', request_id: 'ok', prompt: PROMPT, max_tokens: 4, ignore_eos: true });
  assert.is((await c.waitFor(isDone('ok'))).usage.completion_tokens, 4);
  assert.ok((await metric(server, 'zinfer_request_errors_total', { api: 'ws' })) >= bad.length);
  await c.close();
});

test('MessagePack connection: garbage, text frames and non-objects get errors; it keeps serving', async () => {
  const c = await Conn.open(server.wsUrl, { encoding: 'msgpack' });
  await c.waitFor((e) => e.type === 'session.created');
  expectError(await errorFor(c, () => c.sendRaw(Buffer.from([0xc1, 0xc1, 0xc1]), true)), 'frame', 'E_PROTOCOL', 'not valid MessagePack');
  expectError(await errorFor(c, () => c.sendRaw('{"type":"response.create"}', false)), 'frame', 'E_PROTOCOL', 'text frame on a MessagePack connection');
  expectError(await errorFor(c, () => c.sendRaw(Buffer.from([0x2a]), true)), 'type', 'E_PROTOCOL', 'one event object'); // the number 42
  expectError(await errorFor(c, () => c.send({ type: 'response.create', request_id: 'b', prompt: new Uint8Array([1, 2]) })), 'prompt', 'E_REQUEST');
  c.send({ type: 'response.create', request_id: 'ok', prompt: PROMPT, max_tokens: 3, ignore_eos: true });
  assert.is((await c.waitFor(isDone('ok'))).usage.completion_tokens, 3);
  await c.close();
});

test('a duplicate request_id and one request too many are refused; the others run on', async () => {
  const c = await Conn.open(server.wsUrl);
  c.send({ type: 'response.create', request_id: 'a', prompt: PROMPT, max_tokens: 60, ignore_eos: true });
  const dup = await errorFor(c, () => c.send({ type: 'response.create', request_id: 'a', prompt: PROMPT }));
  expectError(dup, 'request_id', 'E_PROTOCOL', 'already in flight');
  c.send({ type: 'response.create', request_id: 'b', prompt: PROMPT, max_tokens: 60, ignore_eos: true });
  const third = await errorFor(c, () => c.send({ type: 'response.create', request_id: 'c', prompt: PROMPT }));
  expectError(third, 'request_id', 'E_LIMIT', 'too many requests');
  assert.is(third.request_id, 'c');
  c.send({ type: 'response.cancel', request_id: 'a' });
  c.send({ type: 'response.cancel', request_id: 'b' });
  assert.is((await c.waitFor(isDone('a'))).status, 'cancelled');
  assert.is((await c.waitFor(isDone('b'))).status, 'cancelled');
  await c.close();
});

test('a frame over the hard cap closes only that connection (1009); the server keeps serving', async () => {
  const c = await Conn.open(server.wsUrl);
  c.sendRaw('x'.repeat(LIMITS.maxPayloadBytes * 4 + 1), false);
  assert.is((await c.closed).code, 1009);
  const d = await Conn.open(server.wsUrl);
  d.send({ type: 'response.create', request_id: 'ok', prompt: PROMPT, max_tokens: 2 });
  await d.waitFor(isDone('ok'));
  await d.close();
});

async function post(path: string, body: string | object): Promise<{ status: number; json: { error?: { param: string | null; code: string; message: string } } }> {
  const r = await fetch(`${server.openaiUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as { error?: { param: string | null; code: string; message: string } } };
}

test('HTTP: each malformed request gets a 4xx naming the problem; the server keeps serving', async () => {
  const cases: [string, string | object, number, string | null, string][] = [
    ['/completions', '{"prompt": ', 400, 'body', 'E_PROTOCOL'],
    ['/completions', '[1]', 400, 'body', 'E_PROTOCOL'],
    ['/completions', { prompt: 5 }, 400, 'prompt', 'E_REQUEST'],
    ['/completions', { prompt: PROMPT, max_tokens: 'x' }, 400, 'max_tokens', 'E_REQUEST'],
    ['/completions', { prompt: PROMPT, temperature: -1 }, 400, 'temperature', 'E_REQUEST'],
    ['/completions', { prompt: PROMPT, stop: [''] }, 400, 'stop', 'E_REQUEST'],
    ['/completions', { prompt: PROMPT, n: 2 }, 400, 'n', 'E_REQUEST'],
    ['/completions', { prompt: PROMPT, model: 'gpt-4' }, 404, 'model', 'E_NOT_FOUND'],
    ['/completions', { prompt: 'word '.repeat(200) }, 400, 'prompt', 'E_LIMIT'],
    ['/completions', { prompt: PROMPT, max_tokens: 1000 }, 400, 'max_tokens', 'E_LIMIT'],
    ['/completions', { prompt: 'x'.repeat(5000) }, 413, 'body', 'E_LIMIT'],
    ['/chat/completions', { model: 'zinfer-default' }, 400, 'messages', 'E_REQUEST'],
    ['/chat/completions', { messages: [{ role: 'user', content: 3 }] }, 400, 'messages[0].content', 'E_REQUEST'],
    ['/chat/completions', { messages: [{ role: 'user', content: 'hi' }], stream: 'yes' }, 400, 'stream', 'E_REQUEST'],
    ['/nowhere', {}, 404, 'path', 'E_NOT_FOUND'],
  ];
  for (const [path, body, status, param, code] of cases) {
    const r = await post(path, body);
    assert.is(r.status, status, `${path} ${JSON.stringify(body).slice(0, 60)}: ${JSON.stringify(r.json)}`);
    assert.is(r.json.error?.param, param, JSON.stringify(r.json));
    assert.is(r.json.error?.code, code, JSON.stringify(r.json));
  }
  const wrongMethod = await fetch(`${server.openaiUrl}/completions`);
  assert.is(wrongMethod.status, 405);
  const ok = await post('/completions', { prompt: PROMPT, max_tokens: 3 });
  assert.is(ok.status, 200);
});

test.run();
