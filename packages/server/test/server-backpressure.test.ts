// Backpressure: a reader that stops reading never makes the server buffer unbounded output. Once the
// connection's unsent backlog passes maxBufferedBytes, its requests pause in the engine (no more tokens
// are generated); a reader that catches up resumes them; one that stays stuck past slowReaderTimeoutMs
// is closed with code 4001 (WebSocket) or has its stream dropped (SSE), and its requests cancelled.
import { request, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CLOSE } from '../src/ws-protocol.js';
import { fakeEngine } from './helpers/fake-engine.js';
import { Conn, eventually, isDone, serve } from './helpers/server.js';

const DELTA = 16 * 1024;
const MAX_BUFFERED = 64 * 1024;

function socketOf(c: Conn): Socket {
  return (c.ws as unknown as { _socket: Socket })._socket;
}

test('WebSocket: a reader that stops reading pauses its request, then is closed with 4001', async () => {
  const { engine, requests } = fakeEngine(DELTA);
  const server = await serve(engine, { maxBufferedBytes: MAX_BUFFERED, slowReaderTimeoutMs: 300 });
  try {
    const c = await Conn.open(server.wsUrl);
    await c.waitFor((e) => e.type === 'session.created');
    socketOf(c).pause(); // stop reading: the kernel buffers fill, then the server's backlog grows
    c.send({ type: 'response.create', request_id: 'flood', input_ids: [1], max_tokens: 100_000 });
    await eventually(async () => requests[0]?.everPaused === true, 5000, 'the request to pause');
    const atPause = requests[0].generated;
    await new Promise((r) => setTimeout(r, 100));
    assert.is(requests[0].generated, atPause, 'no token is generated while paused');
    assert.ok(atPause < 2000, `generation stopped after ${atPause} tokens (${(atPause * DELTA) / 2 ** 20} MiB), far below max_tokens`);
    await eventually(async () => requests[0].cancelled, 3000, 'the stuck connection to be dropped');
    socketOf(c).resume();
    const closed = await c.closed;
    assert.is(closed.code, CLOSE.slowReader);
    assert.match(closed.reason, 'slow reader');
  } finally {
    await server.close();
  }
});

test('WebSocket: a reader that catches up resumes its request, with every token in order', async () => {
  const { engine, requests } = fakeEngine(DELTA);
  const server = await serve(engine, { maxBufferedBytes: MAX_BUFFERED, slowReaderTimeoutMs: 5000 });
  try {
    const c = await Conn.open(server.wsUrl);
    await c.waitFor((e) => e.type === 'session.created');
    socketOf(c).pause();
    c.send({ type: 'response.create', request_id: 'r', input_ids: [1], max_tokens: 600 });
    await eventually(async () => requests[0]?.everPaused === true, 5000, 'the request to pause');
    socketOf(c).resume();
    const done = await c.waitFor(isDone('r'), 10_000);
    assert.is(done.usage.completion_tokens, 600);
    const { indices } = c.text('r');
    assert.equal(indices, Array.from({ length: 600 }, (_, i) => i), 'no token lost, duplicated or reordered');
    await c.close();
  } finally {
    await server.close();
  }
});

test('SSE: a reader that stops reading pauses its request, then its stream is dropped and cancelled', async () => {
  const { engine, requests } = fakeEngine(DELTA);
  const server = await serve(engine, { maxBufferedBytes: MAX_BUFFERED, slowReaderTimeoutMs: 300 });
  try {
    const body = JSON.stringify({ prompt: [1], max_tokens: 100_000, stream: true });
    let response: IncomingMessage | null = null;
    const ended = new Promise<void>((resolve) => {
      const req = request(`${server.openaiUrl}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        assert.is(res.statusCode, 200);
        response = res;
        res.pause(); // never read
        res.on('close', resolve);
        res.on('error', () => resolve());
      });
      req.on('error', () => resolve());
      req.end(body);
    });
    await eventually(async () => requests[0]?.everPaused === true, 5000, 'the request to pause');
    assert.ok(requests[0].generated < 2000);
    await eventually(async () => requests[0].cancelled, 3000, 'the stuck stream to be dropped');
    let text = '';
    response!.on('data', (d: Buffer) => (text += d.toString()));
    response!.resume(); // read what was sent: the stream ends without [DONE]
    await ended;
    assert.ok(text.startsWith('data: {'), 'chunks were streamed');
    assert.not.match(text, '[DONE]');
  } finally {
    await server.close();
  }
});

test.run();
