// POST /v1/chat/completions: messages rendered with the model's chat template (tokenizer_config.json),
// the reply as an assistant message; streaming chunks announce the role first, as OpenAI's do.
import { RequestError } from '@zinfer/core';
import { asBody, parseCommon } from './openai-params.js';
import { runOpenAi, type OpenAiHandler, type OpenAiShapes } from './openai-run.js';
import { optMessages } from './request-fields.js';

const shapes: OpenAiShapes = {
  idPrefix: 'chatcmpl',
  chunkObject: 'chat.completion.chunk',
  opening: (b) => ({ ...b, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] }),
  chunk: (b, delta, finish) => ({ ...b, object: 'chat.completion.chunk', choices: [{ index: 0, delta: delta === null ? {} : { content: delta }, logprobs: null, finish_reason: finish }] }),
  whole: (b, text, finish, usage) => ({ ...b, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finish }], usage }),
};

export const chatCompletions: OpenAiHandler = async (ctx, _req, res, raw) => {
  const body = asBody(raw);
  // max_completion_tokens is the newer name; either is accepted (the later one wins).
  const common = parseCommon(body, ctx.options.modelName, ['max_tokens', 'max_completion_tokens']);
  const messages = optMessages(body);
  if (!messages) throw new RequestError('messages is required', { field: 'messages', expected: 'a non-empty list of {role, content}', found: 'none' });
  common.request.messages = messages;
  await runOpenAi(ctx, res, 'chat', common, shapes);
};
