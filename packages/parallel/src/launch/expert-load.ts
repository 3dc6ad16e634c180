// Routing statistics of a launched plan (Program.expertLoad). Every tensor rank of a stage routes every
// token of the step (routers are replicated; expert parallelism keeps every token on every rank and only
// cuts the experts), so tensor rank 0 of each stage holds its stage's counts. Stages hold consecutive
// layers, so their per-layer lists concatenate in stage order.
import type { ParallelPlan } from '@zinfer/core';

/** Tensor rank 0 of every stage, in stage order (ranks are stage-major). */
export function stageLeaders(plan: ParallelPlan): number[] {
  const tensorSize = plan.ranks.length / plan.stages;
  return Array.from({ length: plan.stages }, (_, s) => s * tensorSize);
}

/** The model's counts per MoE layer, from each stage leader's `load(rank)` (null: its backend keeps none). */
export async function gatherExpertLoad(plan: ParallelPlan, load: (rank: number) => Promise<Float64Array[] | null>): Promise<Float64Array[]> {
  const parts = await Promise.all(stageLeaders(plan).map(load));
  return parts.flatMap((p) => p ?? []);
}
