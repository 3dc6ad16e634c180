// Readers for fields of untrusted JSON / MessagePack objects. Each throws a RequestError naming the
// field (snake_case, as on the wire), what was expected and what was found, so one bad field gives one
// clear error instead of a crash deeper down.
import { RequestError, type ChatMessage } from '@zinfer/core';

export type Fields = Record<string, unknown>;

export function isObject(v: unknown): v is Fields {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return `a ${typeof v}`;
}

function fail(field: string, expected: string, v: unknown): never {
  throw new RequestError(`invalid field ${field}`, { field, expected, found: describe(v) });
}

export function optNumber(o: Fields, field: string): number | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  return typeof v === 'number' && Number.isFinite(v) ? v : fail(field, 'a finite number', v);
}

export function optInt(o: Fields, field: string, min = 0): number | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min ? v : fail(field, `an integer >= ${min}`, v);
}

export function optBool(o: Fields, field: string): boolean | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  return typeof v === 'boolean' ? v : fail(field, 'true or false', v);
}

export function optString(o: Fields, field: string, maxLength = Infinity): string | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' && v.length <= maxLength ? v : fail(field, maxLength < Infinity ? `a string of at most ${maxLength} characters` : 'a string', v);
}

export function optObject(o: Fields, field: string): Fields | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  return isObject(v) ? v : fail(field, 'an object', v);
}

/** `stop`: one string or a list of non-empty strings (OpenAI allows both). */
export function optStops(o: Fields, field = 'stop'): string[] | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string' && s.length > 0)) fail(field, 'a non-empty string or a list of them', v);
  return list as string[];
}

export function optTokenIds(o: Fields, field: string): number[] | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || !v.every((t) => typeof t === 'number' && Number.isSafeInteger(t) && t >= 0)) fail(field, 'a list of token ids (integers >= 0)', v);
  return v as number[];
}

/** Chat messages: {role, content} where content is a string or OpenAI's list of {type: 'text', text} parts. */
export function optMessages(o: Fields, field = 'messages'): ChatMessage[] | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length === 0) fail(field, 'a non-empty list of {role, content}', v);
  return v.map((m: unknown, i) => {
    const at = `${field}[${i}]`;
    if (!isObject(m)) fail(at, 'an object {role, content}', m);
    const role = m.role;
    if (typeof role !== 'string' || role.length === 0) fail(`${at}.role`, 'a role such as "user"', role);
    return { role, content: messageContent(m.content, `${at}.content`) };
  });
}

function messageContent(c: unknown, field: string): string {
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c.map((part: unknown, i) => {
      if (isObject(part) && part.type === 'text' && typeof part.text === 'string') return part.text;
      return fail(`${field}[${i}]`, 'a text part {type: "text", text}', part);
    }).join('');
  }
  return fail(field, 'a string or a list of text parts', c);
}

/** Refuses fields outside `known` (the WebSocket protocol is strict: a typo should not be ignored). */
export function rejectUnknown(o: Fields, known: ReadonlySet<string>, where: string): void {
  for (const k of Object.keys(o)) {
    if (!known.has(k)) throw new RequestError(`unknown field ${k} in ${where}`, { field: k, expected: [...known].join(', '), found: describe(o[k]) });
  }
}
