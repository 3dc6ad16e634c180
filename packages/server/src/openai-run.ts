// Runs one OpenAI-style request over HTTP, streaming (SSE chunks, then `data: [DONE]`) or not (one JSON
// body). The endpoint supplies the object shapes; this owns what they share: cancellation when the
// client disconnects, backpressure on a slow reader, usage, and errors after the stream has begun.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { toApiError } from './api-error.js';
import { sendError, sendJson } from './http-io.js';
import type { Api } from './metrics.js';
import type { OpenAiCommon } from './openai-params.js';
import { OutputGate } from './output-gate.js';
import type { ServeContext } from './serve-context.js';
import { endSse, sendSse, startSse } from './sse.js';
import type { Usage } from './ws-protocol.js';

export interface OpenAiShapes {
  idPrefix: string;
  /** Chunk with a text delta (finish null) or the closing one (empty delta, finish set). */
  chunk(base: Base, delta: string | null, finish: string | null): object;
  /** First chunk before any text (chat announces the assistant role). */
  opening?(base: Base): object;
  /** The whole non-streaming reply. */
  whole(base: Base, text: string, finish: string, usage: Usage): object;
  /** The usage chunk's `object`. */
  chunkObject: string;
}

export interface Base {
  id: string;
  created: number;
  model: string;
}

export async function runOpenAi(ctx: ServeContext, res: ServerResponse, api: Api, common: OpenAiCommon, shapes: OpenAiShapes): Promise<void> {
  const job = ctx.start(common.request, api); // throws before any header is sent: a plain 4xx reply
  const base: Base = { id: `${shapes.idPrefix}-${randomUUID().replaceAll('-', '')}`, created: Math.floor(Date.now() / 1000), model: ctx.options.modelName };
  let finished = false;
  // A client that hangs up reads nothing more: cancel so its KV blocks go back to the pool.
  res.on('close', () => {
    if (!finished) job.stream.cancel();
  });
  const { limits } = ctx.options;
  const gate = new OutputGate(() => res.writableLength, limits.maxBufferedBytes, limits.slowReaderTimeoutMs, () => res.destroy());
  let text = '';
  if (common.stream) {
    startSse(res);
    gate.add(job.stream);
    if (shapes.opening) sendSse(res, shapes.opening(base));
  }
  const outcome = await job.run((ev) => {
    text += ev.text;
    if (!common.stream || ev.text === '') return;
    sendSse(res, shapes.chunk(base, ev.text, null));
    gate.check();
  });
  finished = true;
  gate.close();
  if (!outcome.ok) {
    let code: string;
    if (common.stream) {
      // Headers are long gone: the error travels as a chunk, which OpenAI clients raise as an APIError.
      const { body } = toApiError(outcome.error);
      sendSse(res, { error: body });
      endSse(res);
      code = body.code;
    } else {
      code = sendError(res, outcome.error);
    }
    ctx.metrics.errors.inc({ api, code });
    return;
  }
  const r = outcome.result;
  const usage: Usage = { prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length };
  if (!common.stream) return sendJson(res, 200, shapes.whole(base, text, r.finishReason, usage));
  sendSse(res, { ...shapes.chunk(base, null, r.finishReason), ...(common.includeUsage ? { usage: null } : {}) });
  if (common.includeUsage) sendSse(res, { id: base.id, object: shapes.chunkObject, created: base.created, model: base.model, choices: [], usage });
  endSse(res);
}

export type OpenAiHandler = (ctx: ServeContext, req: IncomingMessage, res: ServerResponse, body: unknown) => Promise<void>;
