// Small HTTP helpers: a JSON body read with a size cap (413 past it, without buffering the rest), and
// JSON / error replies in the OpenAI error shape.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { toApiError } from './api-error.js';
import { LimitError, ProtocolError } from './server-errors.js';

export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  const tooBig = (n: number) => new LimitError('the request body is over the payload limit', { field: 'body', expected: `at most ${maxBytes} bytes`, found: `${n} bytes` }, 413);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooBig(declared);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooBig(size);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ProtocolError(`the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, { field: 'body', expected: 'a JSON object' });
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Replies with the error in OpenAI's shape {error: {message, type, code, param}}; returns its code. */
export function sendError(res: ServerResponse, e: unknown): string {
  const { status, body } = toApiError(e);
  if (res.headersSent) {
    res.destroy();
    return body.code;
  }
  // A body left unread (413) would otherwise keep the connection busy; close it after the reply.
  sendJson(res, status, { error: body }, status === 413 ? { connection: 'close' } : {});
  return body.code;
}
