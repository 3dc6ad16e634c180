// The typed client (@zinfer/server/client) against a real server on loopback: text deltas equal
// engine.generate() for the same seed in both encodings, many generations per connection, AbortSignal
// and cancel(), server errors as ZinferClientErrors, API keys. Node 20 has no global WebSocket, so the
// tests hand it the ws package's class, as a Node user would.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import type { Engine } from '@zinfer/core';
import { connect, ZinferClient, ZinferClientError } from '../src/client.js';
import type { ZinferServer } from '../src/server.js';
import { eventually, metric, modelEngine, PROMPT, serve } from './helpers/server.js';

const KEY = 'sk-client';
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

for (const encoding of ['json', 'msgpack'] as const) {
  test(`iterates text deltas equal to engine.generate() for the same seed (${encoding})`, async () => {
    const want = await engine.generate({ prompt: PROMPT, maxTokens: 14, temperature: 0.9, seed: 21 }).result;
    const client = await connect({ url: server.wsUrl, apiKey: KEY, encoding, WebSocket });
    assert.is(client.session.encoding, encoding);
    assert.is(client.session.model, 'zinfer-default');
    const gen = client.generate({ prompt: PROMPT, max_tokens: 14, temperature: 0.9, seed: 21 });
    let text = '';
    for await (const delta of gen) text += delta;
    assert.is(text, want.text);
    const done = await gen.done;
    assert.is(done.text, want.text);
    assert.is(done.usage.completion_tokens, want.tokens.length);
    await client.close();
  });
}

test('events() carries token indices; many generations share one connection', async () => {
  const client = await connect({ url: server.url, apiKey: KEY, WebSocket }); // the http:// URL works too
  const gens = [1, 2, 3].map((seed) => client.generate({ prompt: PROMPT, max_tokens: 8, temperature: 1, seed, ignore_eos: true }));
  assert.is(client.inFlight, 3);
  const results = await Promise.all(gens.map(async (g) => {
    const indices: number[] = [];
    for await (const ev of g.events()) indices.push(ev.index);
    return indices;
  }));
  for (const indices of results) assert.equal(indices, [0, 1, 2, 3, 4, 5, 6, 7]);
  const wants = await Promise.all([1, 2, 3].map((seed) => engine.generate({ prompt: PROMPT, maxTokens: 8, temperature: 1, seed, ignoreEos: true }).result));
  for (const [i, g] of gens.entries()) assert.is(await g.text(), wants[i].text);
  await client.close();
});

test('an AbortSignal stops the iterator and cancels on the server; cancel() ends it cleanly', async () => {
  const client = await connect({ url: server.wsUrl, apiKey: KEY, encoding: 'msgpack', WebSocket });
  const ctl = new AbortController();
  const gen = client.generate({ prompt: PROMPT, max_tokens: 400, ignore_eos: true }, { signal: ctl.signal });
  let n = 0;
  try {
    for await (const _ of gen) if (++n === 2) ctl.abort();
    assert.unreachable('the iterator throws once aborted');
  } catch (e) {
    assert.is((e as Error).name, 'AbortError');
  }
  const done = await gen.done;
  assert.is(done.status, 'cancelled');
  await eventually(async () => (await metric(server, 'zinfer_kv_cache_blocks_used')) === 0, 5000, 'blocks freed');

  const gen2 = client.generate({ prompt: PROMPT, max_tokens: 400, ignore_eos: true });
  let m = 0;
  for await (const _ of gen2) if (++m === 2) gen2.cancel();
  assert.is((await gen2.done).status, 'cancelled');
  assert.ok(m < 400);

  const pre = new AbortController();
  pre.abort();
  const gen3 = client.generate({ prompt: PROMPT }, { signal: pre.signal });
  try {
    await gen3.done;
    assert.unreachable('an aborted signal never starts the request');
  } catch (e) {
    assert.is((e as Error).name, 'AbortError');
  }
  await client.close();
});

test('server errors reject with ZinferClientError naming the field; the connection goes on', async () => {
  const client = await ZinferClient.connect({ url: server.wsUrl, apiKey: KEY, WebSocket });
  const bad = client.generate({ prompt: PROMPT, top_p: 3 });
  try {
    for await (const _ of bad);
    assert.unreachable('top_p 3 is refused');
  } catch (e) {
    assert.instance(e, ZinferClientError);
    const err = e as ZinferClientError;
    assert.equal([err.code, err.param, err.requestId], ['E_REQUEST', 'top_p', bad.requestId]);
  }
  const ok = client.generate({ prompt: PROMPT, max_tokens: 3, ignore_eos: true });
  assert.is((await ok.done).usage.completion_tokens, 3);
  await client.close();
});

test('a wrong API key rejects connect with E_AUTH (close 1008); no WebSocket class is a clear error', async () => {
  try {
    await connect({ url: server.wsUrl, apiKey: 'nope', WebSocket });
    assert.unreachable('a wrong key is refused');
  } catch (e) {
    assert.instance(e, ZinferClientError);
    assert.is((e as ZinferClientError).code, 'E_AUTH');
    assert.is((e as ZinferClientError).closeCode, 1008);
  }
  if (!('WebSocket' in globalThis)) {
    try {
      await connect({ url: server.wsUrl });
      assert.unreachable('Node 20 has no global WebSocket');
    } catch (e) {
      assert.is((e as ZinferClientError).param, 'WebSocket');
    }
  }
});

test('a generation in flight fails with E_CLOSED when the server goes away', async () => {
  const s = await serve(engine);
  const client = await connect({ url: s.wsUrl, WebSocket });
  const gen = client.generate({ prompt: PROMPT, max_tokens: 400, ignore_eos: true });
  const it = gen[Symbol.asyncIterator]();
  await it.next();
  await s.close();
  try {
    await gen.done;
    assert.unreachable('the request cannot finish');
  } catch (e) {
    assert.is((e as ZinferClientError).code, 'E_CLOSED');
    assert.is((e as ZinferClientError).closeCode, 1001);
  }
});

test.run();
