// What every API shares: the engine once loaded, the limits, the metrics and the count of requests in
// flight. start() turns a parsed request into a running Job, or throws an error naming the field; the
// prompt is tokenized here (once) so the prompt-token limit is checked before the engine queues it.
import { RequestError, TokenizerError, type Engine, type GenerateRequest } from '@zinfer/core';
import { Job } from './generation-job.js';
import type { Api, ServerMetrics } from './metrics.js';
import { LimitError, NotReadyError } from './server-errors.js';
import type { ResolvedOptions } from './server-options.js';

export class ServeContext {
  engine: Engine | null = null;
  private inflight = 0;

  constructor(readonly options: ResolvedOptions, readonly metrics: ServerMetrics) {}

  get ready(): boolean {
    return this.engine !== null;
  }

  get maxPromptTokens(): number {
    return this.options.limits.maxPromptTokens ?? (this.engine ? this.engine.maxContext - 1 : 0);
  }

  get maxOutputTokens(): number {
    return this.options.limits.maxOutputTokens ?? this.engine?.maxContext ?? 0;
  }

  /** Checks limits, tokenizes the prompt and queues the request on the engine. */
  start(request: GenerateRequest, api: Api): Job {
    const engine = this.engine;
    if (!engine) throw new NotReadyError();
    const max = this.options.limits.maxRequests;
    if (this.inflight >= max) throw new LimitError(`too many requests in flight (the server's limit is ${max}); retry later`, { expected: `at most ${max} requests in flight` }, 429);
    const maxOut = this.maxOutputTokens;
    if (request.maxTokens !== undefined && request.maxTokens > maxOut) {
      throw new LimitError('max_tokens is over the server limit', { field: 'max_tokens', expected: `at most ${maxOut}`, found: String(request.maxTokens) });
    }
    const { ids, field } = promptIds(engine, request);
    const maxPrompt = this.maxPromptTokens;
    if (ids.length > maxPrompt) throw new LimitError('the prompt is over the server limit', { field, expected: `at most ${maxPrompt} tokens`, found: `${ids.length} tokens` });
    const { prompt: _p, messages: _m, ...rest } = request;
    const stream = engine.generate({ ...rest, inputIds: ids, maxTokens: request.maxTokens ?? maxOut });
    this.inflight++;
    return new Job(stream, ids.length, api, this.metrics, () => this.inflight--);
  }
}

/** The prompt as token ids, exactly as the engine would make them from text or chat messages. */
function promptIds(engine: Engine, r: GenerateRequest): { ids: number[]; field: string } {
  const given = [r.prompt, r.messages, r.inputIds].filter((x) => x !== undefined).length;
  if (given !== 1) throw new RequestError('give exactly one of prompt, messages, input_ids', { field: 'prompt', expected: 'exactly one of prompt, messages, input_ids', found: `${given}` });
  if (r.inputIds) return { ids: [...r.inputIds], field: 'input_ids' };
  const field = r.messages ? 'messages' : 'prompt';
  const tok = engine.tokenizer;
  if (!tok) throw new TokenizerError('this model has no tokenizer: send input_ids instead of text', { field, expected: 'input_ids', found: field });
  if (r.messages) return { ids: tok.encode(tok.applyChatTemplate([...r.messages], { addGenerationPrompt: true }), { addSpecialTokens: false }), field };
  return { ids: tok.encode(r.prompt!), field };
}
