// A generation request as users write it, and its validation into the engine's normalized form.
import { RequestError } from './errors.js';
import { validateSampling, type SamplingParams } from './sampling/index.js';
import type { ChatMessage } from './tokenizer.js';

export interface GenerateRequest {
  /** Exactly one of prompt, inputIds, messages. */
  prompt?: string;
  inputIds?: readonly number[];
  /** Chat messages, rendered with the model's chat template. */
  messages?: readonly ChatMessage[];
  /** Most tokens to generate (default: until the context is full). */
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number;
  /** Token ids that end generation (the model's eos ids are added unless ignoreEos). */
  stopTokenIds?: readonly number[];
  /** Strings that end generation; the text is cut before them. */
  stopStrings?: readonly string[];
  ignoreEos?: boolean;
  /** Also return the logits of every prompt position (the CLI's --logits). */
  promptLogits?: boolean;
  signal?: AbortSignal;
}

export interface NormalizedRequest {
  sampling: SamplingParams;
  maxTokens: number | null;
  stopTokenIds: number[];
  stopStrings: string[];
  ignoreEos: boolean;
  promptLogits: boolean;
}

export function normalizeRequest(r: GenerateRequest): NormalizedRequest {
  const given = [r.prompt, r.inputIds, r.messages].filter((x) => x !== undefined).length;
  if (given !== 1) throw new RequestError('give exactly one of prompt, input_ids, messages', { field: 'prompt', expected: 'exactly one input', found: `${given}` });
  if (r.maxTokens !== undefined && !(Number.isSafeInteger(r.maxTokens) && r.maxTokens >= 1)) {
    throw new RequestError('invalid max_tokens', { field: 'max_tokens', expected: 'an integer ≥ 1', found: String(r.maxTokens) });
  }
  const ids = r.stopTokenIds ?? [];
  if (!Array.isArray(ids) || !ids.every((t) => Number.isSafeInteger(t) && t >= 0)) {
    throw new RequestError('invalid stop token ids', { field: 'stop_token_ids', expected: 'a list of token ids', found: JSON.stringify(ids) });
  }
  const stops = r.stopStrings ?? [];
  if (!Array.isArray(stops) || !stops.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new RequestError('invalid stop strings', { field: 'stop', expected: 'a list of non-empty strings', found: JSON.stringify(stops) });
  }
  return {
    sampling: validateSampling({
      temperature: r.temperature, topK: r.topK, topP: r.topP, minP: r.minP, repetitionPenalty: r.repetitionPenalty, seed: r.seed,
    }),
    maxTokens: r.maxTokens ?? null,
    stopTokenIds: [...ids],
    stopStrings: [...stops],
    ignoreEos: r.ignoreEos ?? false,
    promptLogits: r.promptLogits ?? false,
  };
}
