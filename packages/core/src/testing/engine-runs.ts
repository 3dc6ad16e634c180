// Engine-level runs the parity tests of several packages share: one greedy request on an engine made for
// it, and every prompt generated alone against all of them at once (batch invariance).
import { createEngine, type Engine } from '../engine.js';
import type { EngineConfig } from '../engine-config.js';
import type { GenerationResult } from '../generation-stream.js';

/** One greedy request (EOS ignored, the prompt's logits kept) on an engine made from `config`, then closed. */
export async function greedyRun(config: EngineConfig, inputIds: number[], maxTokens = 12): Promise<GenerationResult> {
  const engine = await createEngine(config);
  try {
    return await engine.generate({ inputIds, maxTokens, temperature: 0, ignoreEos: true, promptLogits: true }).result;
  } finally {
    await engine.close();
  }
}

/**
 * The greedy tokens of each prompt generated alone, then of all of them at once (the engine batches and,
 * within its limits, chunks them): a backend whose results depend on the batch shows as a difference.
 */
export async function aloneAndTogether(engine: Engine, prompts: readonly number[][], maxTokens = 8): Promise<{ alone: number[][]; together: number[][] }> {
  const alone: number[][] = [];
  for (const p of prompts) alone.push((await engine.generate({ inputIds: p, maxTokens, temperature: 0 }).result).tokens);
  const together = await Promise.all(prompts.map((p) => engine.generate({ inputIds: p, maxTokens, temperature: 0 }).result));
  return { alone, together: together.map((r) => r.tokens) };
}
