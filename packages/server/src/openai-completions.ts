// POST /v1/completions: text in, text out (OpenAI's legacy completions). max_tokens defaults to 16 as in
// OpenAI's API. The prompt is a string or token ids (or a list of one of either).
import { RequestError, type GenerateRequest } from '@zinfer/core';
import { asBody, parseCommon } from './openai-params.js';
import { runOpenAi, type OpenAiHandler, type OpenAiShapes } from './openai-run.js';
import { describe, type Fields } from './request-fields.js';

const DEFAULT_MAX_TOKENS = 16;

const shapes: OpenAiShapes = {
  idPrefix: 'cmpl',
  chunkObject: 'text_completion',
  chunk: (b, delta, finish) => ({ ...b, object: 'text_completion', choices: [{ index: 0, text: delta ?? '', logprobs: null, finish_reason: finish }] }),
  whole: (b, text, finish, usage) => ({ ...b, object: 'text_completion', choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage }),
};

export const completions: OpenAiHandler = async (ctx, _req, res, raw) => {
  const body = asBody(raw);
  const common = parseCommon(body, ctx.options.modelName, ['max_tokens']);
  Object.assign(common.request, prompt(body));
  common.request.maxTokens ??= DEFAULT_MAX_TOKENS;
  await runOpenAi(ctx, res, 'completions', common, shapes);
};

function prompt(b: Fields): GenerateRequest {
  let p = b.prompt;
  // A list holding one prompt is one prompt; several would be several choices, which zinfer does not batch here.
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  if (typeof p === 'string') return { prompt: p };
  if (Array.isArray(p) && p.length > 0 && p.every((t) => typeof t === 'number' && Number.isSafeInteger(t) && t >= 0)) return { inputIds: p as number[] };
  throw new RequestError('invalid prompt', { field: 'prompt', expected: 'a string or a list of token ids (one prompt per request)', found: describe(p) });
}
