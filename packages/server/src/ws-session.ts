// One WebSocket connection: decodes frames, runs many requests at once (each tagged with its request
// id), streams their tokens, and cancels them all when the connection goes away. A bad frame gets an
// `error` event and the connection keeps serving; every request ends with exactly one of
// `response.done` or an `error` event carrying its request id.
import { randomUUID } from 'node:crypto';
import type { RawData, WebSocket } from 'ws';
import { toApiError } from './api-error.js';
import type { Job, JobOutcome } from './generation-job.js';
import { OutputGate } from './output-gate.js';
import type { ServeContext } from './serve-context.js';
import { LimitError, ProtocolError } from './server-errors.js';
import { decodeFrame, encodeFrame } from './ws-codec.js';
import { CLOSE, type Encoding, type ResponseStatus, type ServerEvent } from './ws-protocol.js';
import { parseClientEvent, peekRequestId, type ParsedEvent } from './ws-request.js';

const CLOSE_GRACE_MS = 5000;

const STATUS: Record<string, ResponseStatus> = { stop: 'completed', length: 'incomplete', abort: 'cancelled' };

export class WsSession {
  readonly id = `sess_${randomUUID()}`;
  private readonly jobs = new Map<string, Job>();
  private readonly gate: OutputGate;
  private nextId = 1;

  constructor(private readonly ws: WebSocket, private readonly ctx: ServeContext, private readonly encoding: Encoding) {
    const { limits } = ctx.options;
    this.gate = new OutputGate(() => ws.bufferedAmount, limits.maxBufferedBytes, limits.slowReaderTimeoutMs, (backlog, ms) => {
      // Its requests end now (blocks back to the pool); the close frame queues behind the unread backlog,
      // so a reader that never reads again is cut off after a grace period.
      this.cancelAll();
      ws.close(CLOSE.slowReader, `slow reader: ${backlog} bytes of output unread after ${Math.round(ms)} ms`);
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    });
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('close', () => this.onClose());
    this.send({
      type: 'session.created',
      session: {
        id: this.id, model: ctx.options.modelName, encoding,
        limits: { max_payload_bytes: limits.maxPayloadBytes, max_requests_per_connection: limits.maxRequestsPerConnection, max_prompt_tokens: ctx.maxPromptTokens, max_output_tokens: ctx.maxOutputTokens },
      },
    });
  }

  private onFrame(data: RawData, isBinary: boolean): void {
    let event: unknown;
    try {
      const bytes = toBytes(data);
      const max = this.ctx.options.limits.maxPayloadBytes;
      if (bytes.length > max) throw new LimitError('the frame is over the payload limit', { field: 'frame', expected: `at most ${max} bytes`, found: `${bytes.length} bytes` }, 413);
      if (this.encoding === 'json' && isBinary) throw new ProtocolError('a binary frame on a JSON connection (ask for the zinfer.msgpack.v1 subprotocol to send MessagePack)', { field: 'frame', expected: 'a JSON text frame', found: `${bytes.length} bytes of binary` });
      if (this.encoding === 'msgpack' && !isBinary) throw new ProtocolError('a text frame on a MessagePack connection', { field: 'frame', expected: 'a MessagePack binary frame', found: 'a text frame' });
      try {
        event = decodeFrame(this.encoding, bytes);
      } catch (e) {
        const what = this.encoding === 'json' ? 'JSON' : 'MessagePack';
        throw new ProtocolError(`the frame is not valid ${what}: ${e instanceof Error ? e.message : String(e)}`, { field: 'frame', expected: `one ${what} event object` });
      }
      this.handle(parseClientEvent(event));
    } catch (e) {
      this.sendError(peekRequestId(event), e);
    }
  }

  private handle(ev: ParsedEvent): void {
    if (ev.type === 'response.cancel') {
      const job = this.jobs.get(ev.requestId);
      if (!job) throw new ProtocolError('no request in flight has this request_id', { field: 'request_id', expected: 'the id of a request in flight on this connection', found: ev.requestId });
      job.stream.cancel(); // its response.done (status cancelled) follows once the engine has freed it
      return;
    }
    const id = ev.requestId ?? `req_${this.nextId++}`;
    if (this.jobs.has(id)) throw new ProtocolError('a request with this request_id is already in flight', { field: 'request_id', expected: 'an id unique among requests in flight', found: id });
    const max = this.ctx.options.limits.maxRequestsPerConnection;
    if (this.jobs.size >= max) throw new LimitError(`too many requests in flight on this connection (limit ${max})`, { field: 'request_id', expected: `at most ${max} requests in flight per connection` }, 429);
    const job = this.ctx.start(ev.request, 'ws');
    this.jobs.set(id, job);
    this.gate.add(job.stream);
    this.send({ type: 'response.created', request_id: id, prompt_tokens: job.promptTokens });
    let text = '';
    void job
      .run((t) => {
        text += t.text;
        this.send({ type: 'response.text.delta', request_id: id, index: t.index, token: t.token, delta: t.text });
        this.gate.check();
      })
      .then((outcome) => this.finish(id, job, text, outcome));
  }

  private finish(id: string, job: Job, text: string, outcome: JobOutcome): void {
    this.jobs.delete(id);
    this.gate.delete(job.stream);
    if (!outcome.ok) return this.sendError(id, outcome.error);
    const r = outcome.result;
    this.send({
      type: 'response.done', request_id: id, status: STATUS[r.finishReason], finish_reason: r.finishReason, text,
      usage: { prompt_tokens: r.promptTokens, completion_tokens: r.tokens.length, total_tokens: r.promptTokens + r.tokens.length },
    });
  }

  private sendError(requestId: string | null, e: unknown): void {
    const { body } = toApiError(e);
    this.ctx.metrics.errors.inc({ api: 'ws', code: body.code });
    this.send({ type: 'error', request_id: requestId, error: body });
  }

  private send(event: ServerEvent): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(encodeFrame(this.encoding, event));
  }

  private onClose(): void {
    this.gate.close();
    // A client that is gone reads nothing: stop its requests so their KV blocks go back to the pool.
    this.cancelAll();
  }

  private cancelAll(): void {
    for (const job of this.jobs.values()) job.stream.cancel();
  }
}

function toBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
