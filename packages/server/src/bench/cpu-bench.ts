// The engine half of the CPU benchmark: decode tokens/s at batch 1 and batch N (steady state, from each
// stream's first token to its last), prefill tokens/s and GFLOP/s of one long prompt (time to its first
// token). The engine is stepped by hand (autoStep off), so each step's report shows what ran together.
import { createEngine, loadModel, ZinferError, type Engine, type FloatDType, type KernelBackend, type StepReport } from '@zinfer/core';
import { modelCost, prefillFlops, type ModelCost } from './model-cost.js';

export interface EngineBenchOptions {
  model: string;
  backend: KernelBackend;
  dtype?: FloatDType;
  /** Tokens generated per request when timing decode. */
  tokens: number;
  /** Requests decoding together for the batched figure. */
  batch: number;
  promptTokens: number;
  /** Timed runs of each measurement; medians are reported. */
  repeat: number;
  seed: number;
  log: (line: string) => void;
}

export interface EngineBenchResult {
  cost: ModelCost;
  modelBytes: number;
  maxPositions: number;
  loadS: number;
  decodeBs1TokensPerS: number;
  decodeBatchTokensPerS: number;
  prefillTokensPerS: number;
  prefillFlops: number;
  prefillGflops: number;
}

/** Prompt of the decode runs; long enough to be a real context, short enough not to matter. */
const DECODE_PROMPT = 16;
/** Warm-up: a prompt of up to this many tokens, then this many decode tokens. */
const WARMUP_PROMPT = 64;
const WARMUP_TOKENS = 4;

/** A figure that cannot be trusted (non-finite logits, requests that did not batch): the run fails. */
export class BenchError extends ZinferError {
  constructor(message: string) {
    super('E_BENCH', message);
  }
}

export async function benchEngine(o: EngineBenchOptions): Promise<EngineBenchResult> {
  const { cost, modelBytes, maxPositions } = await readCost(o.model, o.dtype);
  const t0 = performance.now();
  const engine = await createEngine({
    model: o.model, backend: o.backend, autoStep: false, ...(o.dtype ? { dtype: o.dtype } : {}),
    // One step takes the whole prompt, and all batch requests fit at once: what is timed is one thing.
    limits: { maxBatchTokens: Math.max(512, o.promptTokens, o.batch * DECODE_PROMPT), maxSequences: Math.max(o.batch, 1), maxContext: Math.max(o.promptTokens + 1, WARMUP_PROMPT + 1, DECODE_PROMPT + Math.max(o.tokens, WARMUP_TOKENS)), kvCacheBytes: 2 ** 30 },
  });
  const loadS = (performance.now() - t0) / 1e3;
  o.log(`loaded in ${loadS.toFixed(1)} s`);
  try {
    const ids = promptIds(engine.spec.vocabSize, o.seed);
    await checkLogitsFinite(engine, ids(4, 0));
    o.log('warming up');
    await prefill(engine, ids(Math.min(o.promptTokens, WARMUP_PROMPT), 1));
    await decode(engine, 1, WARMUP_TOKENS, ids, 2);
    await decode(engine, o.batch, 2, ids, 3);

    const bs1 = await repeat(o, 'decode batch 1', (r) => decode(engine, 1, o.tokens, ids, 100 + r), 'tok/s');
    const bsN = await repeat(o, `decode batch ${o.batch}`, (r) => decode(engine, o.batch, o.tokens, ids, 200 + r * o.batch), 'tok/s');
    const pre = await repeat(o, `prefill ${o.promptTokens}`, async (r) => o.promptTokens / (await prefill(engine, ids(o.promptTokens, 300 + r))), 'tok/s');
    const flops = prefillFlops(cost, o.promptTokens);
    return {
      cost, modelBytes, maxPositions, loadS,
      decodeBs1TokensPerS: bs1, decodeBatchTokensPerS: bsN, prefillTokensPerS: pre,
      prefillFlops: flops, prefillGflops: (flops * pre) / o.promptTokens / 1e9,
    };
  } finally {
    await engine.close();
  }
}

async function readCost(dir: string, dtype: FloatDType | undefined): Promise<{ cost: ModelCost; modelBytes: number; maxPositions: number }> {
  const m = await loadModel(dir, dtype ? { dtype } : {}); // headers only: weights are read lazily
  try {
    const modelBytes = m.weights.byteSize();
    return { cost: modelCost(m.graph, modelBytes), modelBytes, maxPositions: m.spec.maxPositions };
  } finally {
    m.weights.close();
  }
}

async function repeat(o: EngineBenchOptions, what: string, run: (r: number) => Promise<number>, unit: string): Promise<number> {
  const values: number[] = [];
  for (let r = 0; r < o.repeat; r++) {
    values.push(await run(r));
    o.log(`${what}: ${values.at(-1)!.toFixed(2)} ${unit}`);
  }
  return median(values);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Seeded prompts: ids(n, k) is the same n ids for the same k, avoiding id 0 and the eos id 2. */
function promptIds(vocab: number, seed: number): (n: number, k: number) => number[] {
  return (n, k) => {
    let x = (Math.imul(seed + 1, 0x9e3779b9) ^ Math.imul(k + 1, 0x85ebca6b)) | 1;
    return Array.from({ length: n }, () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return 3 + ((x >>> 0) % (vocab - 3));
    });
  };
}

interface TimedStep extends StepReport {
  /** performance.now() when the step finished: its tokens were sampled and pushed by then. */
  end: number;
}

/** Steps until all `count` requests have finished; each report with its end time. */
async function drain(engine: Engine, count: number): Promise<TimedStep[]> {
  const steps: TimedStep[] = [];
  for (let finished = 0; finished < count; ) {
    const r = await engine.step();
    if (r.tokens === 0) throw new BenchError('the engine stopped stepping with requests unfinished');
    steps.push({ ...r, end: performance.now() });
    finished += r.finished;
  }
  return steps;
}

/**
 * `batch` requests of `tokens` tokens each, greedy, eos ignored. Steady-state decode rate: the tokens
 * after each stream's first, over the time from the step that gave every stream its first token to the
 * step that gave the last ones. The step reports must show all prompts in the first step and then
 * every request in every decode step, or this would not be a batch-N figure.
 */
async function decode(engine: Engine, batch: number, tokens: number, ids: (n: number, k: number) => number[], k: number): Promise<number> {
  const streams = Array.from({ length: batch }, (_, i) => engine.generate({ inputIds: ids(DECODE_PROMPT, k + i), maxTokens: tokens, temperature: 0, ignoreEos: true }));
  const steps = await drain(engine, batch);
  const results = await Promise.all(streams.map((s) => s.result));
  if (results.some((r) => r.tokens.length !== tokens)) throw new BenchError(`a decode request stopped early: ${results.map((r) => r.tokens.length).join(', ')} of ${tokens} tokens`);
  const shape = steps.map((s) => `${s.sequences}x${s.tokens}`).join(' ');
  // A decode call may run several steps (a program that chains them): each sequence then gets `steps` tokens.
  const decodes = steps.slice(1);
  const together = steps[0].tokens === batch * DECODE_PROMPT && decodes.every((s) => s.sequences === batch && s.tokens === batch * s.steps) && decodes.reduce((n, s) => n + s.steps, 1) === tokens;
  if (!together) throw new BenchError(`the ${batch} decode requests did not share their steps (sequences x tokens per step: ${shape})`);
  return tokens > 1 ? (batch * (tokens - 1)) / ((steps.at(-1)!.end - steps[0].end) / 1e3) : NaN;
}

/** One prompt, maxTokens 1: seconds from submitting it to the end of the step that sampled its token. */
async function prefill(engine: Engine, prompt: number[]): Promise<number> {
  const t0 = performance.now();
  const stream = engine.generate({ inputIds: prompt, maxTokens: 1, temperature: 0, ignoreEos: true });
  const steps = await drain(engine, 1);
  await stream.result;
  return (steps.at(-1)!.end - t0) / 1e3;
}

/** Random weights must still give finite logits, else every figure below is about NaNs. */
async function checkLogitsFinite(engine: Engine, prompt: number[]): Promise<void> {
  const stream = engine.generate({ inputIds: prompt, maxTokens: 1, temperature: 0, promptLogits: true });
  await drain(engine, 1);
  const rows = (await stream.result).promptLogits ?? [];
  if (rows.length !== prompt.length || rows.some((row) => row.some((x) => !Number.isFinite(x)))) {
    throw new BenchError('the model gives non-finite logits: the benchmark would time NaNs');
  }
}
