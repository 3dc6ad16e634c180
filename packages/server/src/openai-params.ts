// The request fields /v1/completions and /v1/chat/completions share, checked and mapped onto an engine
// request. Unknown fields are ignored, as OpenAI clients send extras (user, metadata...), but a field
// whose meaning zinfer cannot honour (n > 1, logprobs, penalties, tools) is refused, naming it.
import { RequestError, type GenerateRequest } from '@zinfer/core';
import { describe, isObject, optBool, optInt, optNumber, optObject, optStops, type Fields } from './request-fields.js';
import { NotFoundError, ProtocolError } from './server-errors.js';

export interface OpenAiCommon {
  request: GenerateRequest;
  stream: boolean;
  includeUsage: boolean;
}

export function asBody(v: unknown): Fields {
  if (!isObject(v)) throw new ProtocolError('the request body must be a JSON object', { field: 'body', expected: 'a JSON object', found: describe(v) });
  return v;
}

export function parseCommon(b: Fields, modelName: string, maxTokensFields: readonly string[]): OpenAiCommon {
  const model = b.model;
  if (model !== undefined && model !== modelName) {
    throw new NotFoundError(`the model ${describe(model)} does not exist on this server (GET /v1/models lists it)`, { field: 'model', expected: JSON.stringify(modelName), found: describe(model) });
  }
  refuse(b, 'n', (v) => v === 1, 'n = 1 (one choice per request)');
  refuse(b, 'best_of', (v) => v === 1, 'best_of = 1');
  refuse(b, 'logprobs', (v) => v === false || v === 0, 'no logprobs (not supported)');
  refuse(b, 'top_logprobs', (v) => v === 0, 'no top_logprobs (not supported)');
  refuse(b, 'echo', (v) => v === false, 'echo false (not supported)');
  refuse(b, 'presence_penalty', (v) => v === 0, '0 (not supported; repetition_penalty is)');
  refuse(b, 'frequency_penalty', (v) => v === 0, '0 (not supported; repetition_penalty is)');
  refuse(b, 'tools', (v) => Array.isArray(v) && v.length === 0, 'no tools (not supported)');
  refuse(b, 'suffix', (v) => v === '', 'no suffix (not supported)');

  const r: GenerateRequest = {};
  for (const f of maxTokensFields) {
    const n = optInt(b, f, 1);
    if (n !== undefined) r.maxTokens = n;
  }
  const numbers = {
    temperature: optNumber(b, 'temperature'), topP: optNumber(b, 'top_p'), minP: optNumber(b, 'min_p'),
    repetitionPenalty: optNumber(b, 'repetition_penalty'), topK: optInt(b, 'top_k'), seed: optInt(b, 'seed', Number.MIN_SAFE_INTEGER),
  };
  for (const [k, v] of Object.entries(numbers) as [keyof typeof numbers, number | undefined][]) if (v !== undefined) r[k] = v;
  const stop = optStops(b);
  if (stop) r.stopStrings = stop;
  const ignoreEos = optBool(b, 'ignore_eos');
  if (ignoreEos !== undefined) r.ignoreEos = ignoreEos;
  const stream = optBool(b, 'stream') ?? false;
  const opts = optObject(b, 'stream_options');
  const includeUsage = opts ? optBool(opts, 'include_usage') ?? false : false;
  if (opts && !stream) throw new RequestError('stream_options needs stream: true', { field: 'stream_options', expected: 'stream: true', found: 'stream: false' });
  return { request: r, stream, includeUsage };
}

function refuse(b: Fields, field: string, ok: (v: unknown) => boolean, expected: string): void {
  const v = b[field];
  if (v !== undefined && v !== null && !ok(v)) throw new RequestError(`${field} is not supported here`, { field, expected, found: describe(v) });
}
