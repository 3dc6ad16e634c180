// One error shape for both APIs, OpenAI's: { message, type, code, param } plus zinfer's expected/found.
// `param` names the request field at fault; `code` is zinfer's stable error code (E_REQUEST, E_LIMIT...).
import { ZinferError } from '@zinfer/core';

export interface ApiErrorBody {
  message: string;
  /** OpenAI's category: invalid_request_error, authentication_error, rate_limit_error, server_error... */
  type: string;
  code: string;
  param: string | null;
  expected?: string;
  found?: string;
}

export interface ApiError {
  status: number;
  body: ApiErrorBody;
}

const STATUS_BY_CODE: Record<string, number> = {
  E_REQUEST: 400, E_CAPACITY: 400, E_TOKENIZER: 400, E_CONFIG: 400, E_ABORTED: 503, E_BUSY: 409,
};

const TYPE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request_error', 401: 'authentication_error', 404: 'not_found_error', 405: 'invalid_request_error',
  409: 'conflict_error', 413: 'invalid_request_error', 429: 'rate_limit_error', 503: 'service_unavailable',
};

export function toApiError(e: unknown): ApiError {
  if (!(e instanceof ZinferError)) {
    return { status: 500, body: { message: `internal error: ${e instanceof Error ? e.message : String(e)}`, type: 'server_error', code: 'E_INTERNAL', param: null } };
  }
  const own = (e as { status?: unknown }).status;
  const status = typeof own === 'number' ? own : STATUS_BY_CODE[e.code] ?? 500;
  const body: ApiErrorBody = { message: e.message, type: TYPE_BY_STATUS[status] ?? 'server_error', code: e.code, param: e.info.field ?? null };
  if (e.info.expected !== undefined) body.expected = e.info.expected;
  if (e.info.found !== undefined) body.found = e.info.found;
  return { status, body };
}
