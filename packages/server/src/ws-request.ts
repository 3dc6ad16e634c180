// Parses a client frame's event: `response.create` into an engine request, `response.cancel` into the
// id to cancel. Strict: an unknown event or field is an error naming it, not silently ignored.
import type { GenerateRequest } from '@zinfer/core';
import { describe, isObject, optBool, optInt, optMessages, optNumber, optStops, optString, optTokenIds, rejectUnknown, type Fields } from './request-fields.js';
import { ProtocolError } from './server-errors.js';

export type ParsedEvent =
  | { type: 'response.create'; requestId: string | null; request: GenerateRequest }
  | { type: 'response.cancel'; requestId: string };

const MAX_ID_LENGTH = 128;

const CREATE_FIELDS = new Set([
  'type', 'request_id', 'prompt', 'messages', 'input_ids', 'max_tokens', 'temperature', 'top_p', 'top_k', 'min_p',
  'repetition_penalty', 'seed', 'stop', 'stop_token_ids', 'ignore_eos',
]);
const CANCEL_FIELDS = new Set(['type', 'request_id']);

/** The request id of an event, when it has a usable one (so that even a bad event's error names it). */
export function peekRequestId(event: unknown): string | null {
  return isObject(event) && typeof event.request_id === 'string' && event.request_id.length <= MAX_ID_LENGTH ? event.request_id : null;
}

export function parseClientEvent(event: unknown): ParsedEvent {
  if (!isObject(event)) throw new ProtocolError('a frame must hold one event object', { field: 'type', expected: 'an object {type, ...}', found: describe(event) });
  const type = event.type;
  if (typeof type !== 'string') throw new ProtocolError('the event has no type', { field: 'type', expected: 'response.create | response.cancel', found: describe(type) });
  if (type === 'response.create') return { type, requestId: requestId(event, false), request: createRequest(event) };
  if (type === 'response.cancel') {
    rejectUnknown(event, CANCEL_FIELDS, type);
    return { type, requestId: requestId(event, true)! };
  }
  throw new ProtocolError(`unknown event type ${JSON.stringify(type).slice(0, 80)}`, { field: 'type', expected: 'response.create | response.cancel', found: describe(type) });
}

function requestId(e: Fields, required: boolean): string | null {
  const id = optString(e, 'request_id', MAX_ID_LENGTH);
  if (id === undefined && required) throw new ProtocolError('the event needs the request_id it is about', { field: 'request_id', expected: 'a string', found: 'none' });
  if (id !== undefined && id.length === 0) throw new ProtocolError('request_id is empty', { field: 'request_id', expected: 'a non-empty string', found: '""' });
  return id ?? null;
}

function createRequest(e: Fields): GenerateRequest {
  rejectUnknown(e, CREATE_FIELDS, 'response.create');
  const r: GenerateRequest = {};
  const prompt = optString(e, 'prompt');
  const messages = optMessages(e);
  const inputIds = optTokenIds(e, 'input_ids');
  if (prompt !== undefined) r.prompt = prompt;
  if (messages !== undefined) r.messages = messages;
  if (inputIds !== undefined) r.inputIds = inputIds;
  const maxTokens = optInt(e, 'max_tokens', 1);
  if (maxTokens !== undefined) r.maxTokens = maxTokens;
  setIf(r, 'temperature', optNumber(e, 'temperature'));
  setIf(r, 'topP', optNumber(e, 'top_p'));
  setIf(r, 'topK', optInt(e, 'top_k'));
  setIf(r, 'minP', optNumber(e, 'min_p'));
  setIf(r, 'repetitionPenalty', optNumber(e, 'repetition_penalty'));
  setIf(r, 'seed', optInt(e, 'seed', Number.MIN_SAFE_INTEGER));
  const stop = optStops(e);
  if (stop) r.stopStrings = stop;
  const stopIds = optTokenIds(e, 'stop_token_ids');
  if (stopIds) r.stopTokenIds = stopIds;
  const ignoreEos = optBool(e, 'ignore_eos');
  if (ignoreEos !== undefined) r.ignoreEos = ignoreEos;
  return r;
}

type NumberKey = 'temperature' | 'topP' | 'topK' | 'minP' | 'repetitionPenalty' | 'seed';

function setIf(r: GenerateRequest, key: NumberKey, v: number | undefined): void {
  if (v !== undefined) r[key] = v;
}
