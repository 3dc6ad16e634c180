import { RequestError } from '../errors.js';

/**
 * How the next token is chosen. Semantics follow Hugging Face transformers' generate(); names are
 * camelCase here and snake_case on the wire (`top_p`), which is what validation errors name.
 */
export interface SamplingParams {
  /** Divides the logits before softmax; 0 means greedy (argmax). */
  temperature: number;
  /** Keep only the k highest-scoring tokens (and any tied with the k-th); 0 = off. */
  topK: number;
  /** Nucleus: keep the smallest set of top tokens whose probability sums to >= topP; in (0, 1], 1 = off. */
  topP: number;
  /** Drop tokens whose probability is below minP times the top token's; in [0, 1), 0 = off. */
  minP: number;
  /** CTRL penalty on every token already in the prompt or output; > 0, 1 = off. */
  repetitionPenalty: number;
  /** Makes the draws reproducible; without it the sampler seeds itself from crypto randomness. */
  seed?: number;
}

/**
 * transformers' neutral values, so every processor starts off. (transformers' GenerationConfig has
 * top_k 50 and do_sample false; an engine default should not silently truncate, so top-k is off here.)
 */
export const DEFAULT_SAMPLING: SamplingParams = Object.freeze({
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
});

/** Fills defaults and checks ranges; throws a RequestError naming the snake_case field. */
export function validateSampling(p: Partial<SamplingParams>): SamplingParams {
  const d = DEFAULT_SAMPLING;
  const out: SamplingParams = {
    temperature: check(p.temperature, d.temperature, 'temperature', 'a finite number >= 0 (0 = greedy)',
      (v) => Number.isFinite(v) && v >= 0),
    topK: check(p.topK, d.topK, 'top_k', 'an integer >= 0 (0 = off)', (v) => Number.isInteger(v) && v >= 0),
    topP: check(p.topP, d.topP, 'top_p', 'a number in (0, 1] (1 = off)', (v) => v > 0 && v <= 1),
    minP: check(p.minP, d.minP, 'min_p', 'a number in [0, 1) (0 = off)', (v) => v >= 0 && v < 1),
    repetitionPenalty: check(p.repetitionPenalty, d.repetitionPenalty, 'repetition_penalty',
      'a finite number > 0 (1 = off)', (v) => Number.isFinite(v) && v > 0),
  };
  if (p.seed !== undefined) out.seed = check(p.seed, 0, 'seed', 'a safe integer', Number.isSafeInteger);
  return out;
}

// `ok` sees only numbers; NaN fails every range comparison, so it is rejected without a special case.
// The typeof test is for callers that pass parsed JSON through a cast.
function check(v: unknown, fallback: number, field: string, expected: string, ok: (v: number) => boolean): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !ok(v)) {
    throw new RequestError(`invalid sampling parameter ${field}`, { field, expected, found: show(v) });
  }
  return v;
}

function show(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return `${JSON.stringify(v)} (a string)`;
  return v === null ? 'null' : `a ${typeof v}`;
}
