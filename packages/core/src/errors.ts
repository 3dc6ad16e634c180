// Typed errors. Every error names what was wrong (file, tensor, field), what was expected and what was
// found, so a user can act on the message alone. `code` is stable for programs; the message is for people.
// The structured facts are in `info`, not `details`: uvu's reporter treats a thrown error's `details` as a
// diff string and crashes (silently, exit 0) on an object.

export interface ErrorDetails {
  /** The file involved, when there is one. */
  file?: string;
  /** The tensor involved, when there is one. */
  tensor?: string;
  /** The config field or parameter involved (dotted path), when there is one. */
  field?: string;
  expected?: string;
  found?: string;
}

export class ZinferError extends Error {
  readonly code: string;
  readonly info: ErrorDetails;
  constructor(code: string, message: string, details: ErrorDetails = {}) {
    super(message + describe(details));
    this.name = new.target.name;
    this.code = code;
    this.info = details;
  }
}

function describe(d: ErrorDetails): string {
  const parts: string[] = [];
  if (d.file !== undefined) parts.push(`file ${d.file}`);
  if (d.tensor !== undefined) parts.push(`tensor ${d.tensor}`);
  if (d.field !== undefined) parts.push(`field ${d.field}`);
  if (d.expected !== undefined) parts.push(`expected ${d.expected}`);
  if (d.found !== undefined) parts.push(`found ${d.found}`);
  return parts.length ? ` (${parts.join('; ')})` : '';
}

/** An engine config or option object has a wrong field. */
export class ConfigError extends ZinferError {
  constructor(message: string, details: ErrorDetails) {
    super('E_CONFIG', message, details);
  }
}

/** A model file (config.json, safetensors, index) is missing, malformed or disagrees with the config. */
export class ModelFormatError extends ZinferError {
  constructor(message: string, details: ErrorDetails) {
    super('E_MODEL_FORMAT', message, details);
  }
}

/** A safetensors file is malformed (bad header, offsets, dtype). */
export class SafetensorsError extends ZinferError {
  constructor(message: string, details: ErrorDetails) {
    super('E_SAFETENSORS', message, details);
  }
}

/** The model's architecture or one of its options is not supported. */
export class UnsupportedModelError extends ZinferError {
  constructor(message: string, details: ErrorDetails) {
    super('E_UNSUPPORTED_MODEL', message, details);
  }
}

/** Text input or output was asked for but the model directory has no usable tokenizer. */
export class TokenizerError extends ZinferError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('E_TOKENIZER', message, details);
  }
}

/** A generation request has an invalid parameter (sampling, stop, lengths). */
export class RequestError extends ZinferError {
  constructor(message: string, details: ErrorDetails) {
    super('E_REQUEST', message, details);
  }
}

/** A request cannot fit: prompt longer than the context, or more KV-cache blocks than exist. */
export class CapacityError extends ZinferError {
  constructor(message: string, details: ErrorDetails) {
    super('E_CAPACITY', message, details);
  }
}

/** A kernel backend failed or cannot run an op. */
export class BackendError extends ZinferError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('E_BACKEND', message, details);
  }
}

/** The request was cancelled through its AbortSignal or the engine was closed. */
export class AbortError extends ZinferError {
  constructor(message = 'the request was aborted') {
    super('E_ABORTED', message);
  }
}

/** The engine cannot do this while requests run (e.g. restarting its ranks); retry when it is idle. */
export class BusyError extends ZinferError {
  constructor(message: string, details: ErrorDetails) {
    super('E_BUSY', message, details);
  }
}
