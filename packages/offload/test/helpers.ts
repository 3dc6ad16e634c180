// Shared by the offload tests: one greedy (and one seeded sampling) run through createEngine, with or
// without offload, on a fixture model.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createEngine, layerWeightGroups, loadModel, type GenerationResult, type KernelBackend, type WeightOffload } from '@zinfer/core';
import type { WeightPlacement } from '../src/index.js';

export const MODELS = join(import.meta.dirname, '../../../fixtures/models');

export function inputIds(model: string): number[] {
  return (JSON.parse(readFileSync(join(MODELS, model, 'expected.json'), 'utf8')) as { input_ids: number[] }).input_ids;
}

export interface RunResult {
  greedy: GenerationResult;
  sampled: GenerationResult;
  summary: readonly string[];
  placement: WeightPlacement | null;
}

/** Greedy with prompt logits, then seeded sampling (its tokens depend on every decode logit). */
export async function runModel(model: string, backend: KernelBackend, offload?: WeightOffload, inspect?: (p: WeightPlacement) => Promise<void> | void): Promise<RunResult> {
  const e = await createEngine({ model: join(MODELS, model), backend, limits: { maxSequences: 2, kvCacheBytes: 2 ** 20 }, ...(offload ? { offload } : {}) });
  try {
    const ids = inputIds(model);
    const greedy = await e.generate({ inputIds: ids, maxTokens: 6, temperature: 0, promptLogits: true }).result;
    const sampled = await e.generate({ inputIds: ids, maxTokens: 6, temperature: 0.9, seed: 7 }).result;
    const placement = e.offload as WeightPlacement | null;
    if (placement && inspect) await inspect(placement);
    return { greedy, sampled, summary: placement?.summary ?? [], placement };
  } finally {
    await e.close();
  }
}

/** Bytes of the non-layer weights and of each layer group, as stored. */
export async function modelBytes(model: string): Promise<{ nonLayer: number; groups: number[]; total: number }> {
  const m = await loadModel(join(MODELS, model));
  try {
    const groups = layerWeightGroups(m.graph);
    const bytes = (n: string) => m.weights.get(n).data.byteLength;
    const layered = new Set(groups.flatMap((g) => g.names));
    const nonLayer = [...m.graph.weights.keys()].filter((n) => !layered.has(n)).reduce((a, n) => a + bytes(n), 0);
    const sizes = groups.map((g) => g.names.reduce((a, n) => a + bytes(n), 0));
    return { nonLayer, groups: sizes, total: nonLayer + sizes.reduce((a, b) => a + b, 0) };
  } finally {
    m.weights.close();
  }
}
