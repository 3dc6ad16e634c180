// The OpenAI-compatible HTTP API through the official `openai` npm client pointed at the server's
// baseURL: streamed and whole chat completions and completions equal engine.generate() for the same
// seed; stop, usage, /v1/models, errors; and a client that hangs up mid-stream frees its KV blocks.
import OpenAI from 'openai';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Engine } from '@zinfer/core';
import type { ZinferServer } from '../src/server.js';
import { eventually, metric, modelEngine, PROMPT, serve } from './helpers/server.js';

const KEY = 'sk-openai-test';
const MODEL_ID = 'zinfer-default';
const MESSAGES = [{ role: 'system' as const, content: 'You write plain English.' }, { role: 'user' as const, content: 'Tell me about the jury.' }];
let engine: Engine;
let server: ZinferServer;
let client: OpenAI;

test.before(async () => {
  engine = await modelEngine();
  server = await serve(engine, { apiKey: KEY });
  client = new OpenAI({ baseURL: server.openaiUrl, apiKey: KEY, maxRetries: 0, timeout: 20_000 });
});

test.after(async () => {
  await server.close();
  await engine.close();
});

test('the official openai client streams a chat completion equal to engine.generate() for the same seed', async () => {
  const want = await engine.generate({ messages: MESSAGES, maxTokens: 16, temperature: 0.8, topP: 0.95, seed: 11 }).result;
  const stream = await client.chat.completions.create({
    model: MODEL_ID, messages: MESSAGES, max_tokens: 16, temperature: 0.8, top_p: 0.95, seed: 11, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.is(chunk.object, 'chat.completion.chunk');
    const choice = chunk.choices[0];
    if (choice) {
      text += choice.delta.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(chunks > 3, 'several chunks arrived');
  assert.is(text, want.text);
  assert.is(finish, want.finishReason);
  assert.equal(usage, { prompt_tokens: want.promptTokens, completion_tokens: want.tokens.length, total_tokens: want.promptTokens + want.tokens.length });
});

test('a whole chat completion, with a stop string', async () => {
  const full = await engine.generate({ messages: MESSAGES, maxTokens: 20, temperature: 0 }).result;
  const stop = full.text!.slice(8, 12);
  const want = await engine.generate({ messages: MESSAGES, maxTokens: 20, temperature: 0, stopStrings: [stop] }).result;
  const r = await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, max_completion_tokens: 20, temperature: 0, stop });
  assert.is(r.object, 'chat.completion');
  assert.is(r.choices[0].message.role, 'assistant');
  assert.is(r.choices[0].message.content, want.text);
  assert.is(r.choices[0].finish_reason, 'stop');
  assert.ok(!r.choices[0].message.content!.includes(stop));
  assert.is(r.usage?.completion_tokens, want.tokens.length);
});

test('completions, streamed and whole; max_tokens defaults to 16 as in OpenAI', async () => {
  const want = await engine.generate({ prompt: PROMPT, maxTokens: 10, temperature: 0.7, seed: 3 }).result;
  const stream = await client.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: 10, temperature: 0.7, seed: 3, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.is(text, want.text);
  const whole = await client.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: 10, temperature: 0.7, seed: 3 });
  assert.is(whole.choices[0].text, want.text);
  const ids = await client.completions.create({ model: MODEL_ID, prompt: engine.tokenizer!.encode(PROMPT), temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.is(ids.usage?.completion_tokens, 16);
});

test('/v1/models lists the model; errors arrive as APIErrors naming the field', async () => {
  const models = await client.models.list();
  assert.equal(models.data.map((m) => m.id), [MODEL_ID]);
  try {
    await client.chat.completions.create({ model: MODEL_ID, messages: MESSAGES, top_p: 5 });
    assert.unreachable('top_p 5 is refused');
  } catch (e) {
    assert.instance(e, OpenAI.APIError);
    const err = e as InstanceType<typeof OpenAI.APIError>;
    assert.is(err.status, 400);
    assert.is(err.param, 'top_p');
  }
  const bad = new OpenAI({ baseURL: server.openaiUrl, apiKey: 'sk-wrong', maxRetries: 0 });
  try {
    await bad.models.list();
    assert.unreachable('a wrong key is refused');
  } catch (e) {
    assert.instance(e, OpenAI.AuthenticationError);
  }
});

test('a client that disconnects from an SSE stream has its request cancelled and its blocks freed', async () => {
  const aborted = await metric(server, 'zinfer_requests_total', { api: 'chat', finish_reason: 'abort' });
  const ctl = new AbortController();
  const r = await fetch(`${server.openaiUrl}/chat/completions`, {
    method: 'POST', signal: ctl.signal, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL_ID, messages: MESSAGES, max_tokens: 400, ignore_eos: true, stream: true }),
  });
  const reader = r.body!.getReader();
  let seen = '';
  while (!seen.includes('"content":" ') && !seen.includes('"content":"')) seen += new TextDecoder().decode((await reader.read()).value);
  assert.ok((await metric(server, 'zinfer_kv_cache_blocks_used')) > 0);
  ctl.abort();
  await eventually(async () => (await metric(server, 'zinfer_kv_cache_blocks_used')) === 0, 5000, 'blocks freed');
  await eventually(async () => (await metric(server, 'zinfer_requests_total', { api: 'chat', finish_reason: 'abort' })) === aborted + 1, 5000, 'an aborted request');
});

test('metrics: latency histograms and token counters move with requests', async () => {
  const before = await metric(server, 'zinfer_generation_tokens_total');
  await client.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: 5, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.is((await metric(server, 'zinfer_generation_tokens_total')) - before, 5);
  for (const name of ['zinfer_time_to_first_token_seconds_count', 'zinfer_inter_token_latency_seconds_count', 'zinfer_e2e_request_latency_seconds_count', 'zinfer_prompt_tokens_total']) {
    assert.ok((await metric(server, name)) > 0, name);
  }
  assert.ok((await metric(server, 'zinfer_kv_cache_blocks_total')) > 0);
  assert.ok((await metric(server, 'zinfer_process_resident_memory_bytes')) > 0);
});

test.run();
