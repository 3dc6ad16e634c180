// Errors the server adds to the engine's: a malformed frame or body, a limit, a failed API key, an
// unknown route. Each carries the HTTP status it maps to; the WebSocket side sends the same facts.
import { ZinferError, type ErrorDetails } from '@zinfer/core';

/** A frame or body that is not a valid message at all (not JSON, wrong event, wrong field type). */
export class ProtocolError extends ZinferError {
  readonly status = 400;
  constructor(message: string, details: ErrorDetails = {}) {
    super('E_PROTOCOL', message, details);
  }
}

/** A server limit (payload size, concurrent requests, prompt or output tokens) was exceeded. */
export class LimitError extends ZinferError {
  constructor(message: string, details: ErrorDetails, readonly status: 400 | 413 | 429 = 400) {
    super('E_LIMIT', message, details);
  }
}

export class AuthError extends ZinferError {
  readonly status = 401;
  constructor(message = 'missing or wrong API key: send Authorization: Bearer <key>') {
    super('E_AUTH', message, { field: 'authorization' });
  }
}

export class NotFoundError extends ZinferError {
  constructor(message: string, details: ErrorDetails = {}, readonly status: 404 | 405 = 404) {
    super('E_NOT_FOUND', message, details);
  }
}

/** The model is still loading (HTTP 503; WebSocket close 1013, "try again later"). */
export class NotReadyError extends ZinferError {
  readonly status = 503;
  constructor() {
    super('E_NOT_READY', 'the model is still loading: retry when GET /health answers 200');
  }
}

/** The operation does not fit the server's state (e.g. a replan without expert parallelism or statistics). */
export class ConflictError extends ZinferError {
  readonly status = 409;
  constructor(message: string, details: ErrorDetails = {}) {
    super('E_CONFLICT', message, details);
  }
}
