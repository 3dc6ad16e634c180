// The WebSocket protocol, shared by the server and the client (so: no Node-only imports here).
// Event names follow the OpenAI Realtime vocabulary where they fit; every event about a request
// carries its request_id, so one connection can run many requests at once.

/** Path of the WebSocket endpoint. */
export const WS_PATH = '/v1/ws';
/** Subprotocol for JSON text frames (also the default when none is offered). */
export const JSON_PROTOCOL = 'zinfer.json.v1';
/** Subprotocol for MessagePack binary frames. */
export const MSGPACK_PROTOCOL = 'zinfer.msgpack.v1';
/** Prefix of the API-key subprotocol: `zinfer.auth.<base64url(key)>` (browsers cannot set headers). */
export const AUTH_PROTOCOL_PREFIX = 'zinfer.auth.';

export type Encoding = 'json' | 'msgpack';

/** Close codes the server uses (1000-1015 from RFC 6455, 4xxx its own). */
export const CLOSE = {
  normal: 1000,
  /** Missing or wrong API key. */
  unauthorized: 1008,
  /** A frame larger than the hard payload cap (ws closes on its own). */
  tooBig: 1009,
  /** The model is still loading: retry when /health answers 200. */
  tryAgainLater: 1013,
  /** The client did not read its output: the backlog stayed over the limit too long. */
  slowReader: 4001,
  /** No pong to the server's ping in time. */
  heartbeatTimeout: 4002,
  /** The server is shutting down. */
  goingAway: 1001,
} as const;

// ---- client → server ----

export interface ChatMessageInput {
  role: string;
  content: string;
}

/** Starts a request. Exactly one of prompt, messages, input_ids. */
export interface ResponseCreateEvent {
  type: 'response.create';
  /** Chosen by the client (unique among its requests in flight); the server makes one when absent. */
  request_id?: string;
  prompt?: string;
  messages?: ChatMessageInput[];
  input_ids?: number[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
  seed?: number;
  stop?: string | string[];
  stop_token_ids?: number[];
  ignore_eos?: boolean;
}

export interface ResponseCancelEvent {
  type: 'response.cancel';
  request_id: string;
}

export type ClientEvent = ResponseCreateEvent | ResponseCancelEvent;

// ---- server → client ----

export interface SessionLimits {
  max_payload_bytes: number;
  max_requests_per_connection: number;
  max_prompt_tokens: number;
  max_output_tokens: number;
}

export interface SessionCreatedEvent {
  type: 'session.created';
  session: { id: string; model: string; encoding: Encoding; limits: SessionLimits };
}

export interface ResponseCreatedEvent {
  type: 'response.created';
  request_id: string;
  prompt_tokens: number;
}

export interface ResponseTextDeltaEvent {
  type: 'response.text.delta';
  request_id: string;
  /** Index of the token among the generated ones: 0, 1, 2... with no gaps (a client can check order). */
  index: number;
  token: number;
  /** Text this token completed; may be '' (half of a UTF-8 character, a pending stop string). */
  delta: string;
}

/** completed: stopped (eos or a stop); incomplete: hit max_tokens or the context; cancelled; failed. */
export type ResponseStatus = 'completed' | 'incomplete' | 'cancelled' | 'failed';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ResponseDoneEvent {
  type: 'response.done';
  request_id: string;
  status: ResponseStatus;
  finish_reason: 'stop' | 'length' | 'abort' | 'error';
  /** The whole text (the deltas joined). */
  text: string;
  usage: Usage;
}

export interface ErrorBody {
  message: string;
  type: string;
  /** zinfer's stable code: E_PROTOCOL, E_REQUEST, E_LIMIT, E_CAPACITY... */
  code: string;
  /** The field at fault, when there is one. */
  param: string | null;
  expected?: string;
  found?: string;
}

export interface ErrorEvent {
  type: 'error';
  /** The request the error is about; null when the frame could not be tied to one. */
  request_id: string | null;
  error: ErrorBody;
}

export type ServerEvent = SessionCreatedEvent | ResponseCreatedEvent | ResponseTextDeltaEvent | ResponseDoneEvent | ErrorEvent;
