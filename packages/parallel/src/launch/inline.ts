// Ranks that share this thread: every rank's program is compiled here, and each step every rank runs
// its micro-batches in order, all ranks at once (their communication is async, so they interleave).
// For tests and for backends that bring their own threads; the default runs ranks in worker threads.
import { HostRowSampler, type LaunchArgs, type Program, type StepBatch } from '@zinfer/core';
import { announceStep, compileRank, type KvOffloadOptions } from '../kv-offload/compile-rank.js';
import { ShardedWeights } from '../tensor-parallel/sharded-weights.js';
import { gatherExpertLoad } from './expert-load.js';
import { closeGroups, createGridGroups, outputRank, rankCommunicators } from './groups.js';
import { concat, splitBatch } from './micro-batches.js';
import { chainSteps, pickingProgram, ranksChain, runRank, splitPick, type PickStep } from './rank-pick.js';

export async function launchInline(args: LaunchArgs, microBatches: (batch: StepBatch) => number, kvOffload: KvOffloadOptions | null = null): Promise<Program> {
  const { plan, backend, weights, kvCache } = args;
  const groups = createGridGroups(plan);
  const programs: Program[] = [];
  for (const [r, rank] of plan.ranks.entries()) {
    const source = new ShardedWeights(weights, rank.shards, [...rank.graph.weights.keys()]);
    programs.push(await compileRank(backend, rank.graph, source, { kvCache, ...rankCommunicators(groups, r) }, kvOffload));
  }
  const out = outputRank(plan);
  const host = new HostRowSampler();
  // `pick`: the output rank answers with token ids (rank-pick.ts); the other ranks just run (runRank).
  const step: PickStep = async (batch, pick) => {
    const parts = splitBatch(batch, chainSteps(pick) > 1 ? 1 : microBatches(batch));
    const picks = splitPick(pick, parts);
    try {
      const outs = await Promise.all(programs.map(async (p, r) => {
        const results: (Float32Array | Int32Array)[] = [];
        for (const mb of parts) announceStep(p, mb); // an offloaded KV cache loads the next one's blocks while one runs
        for (const [i, mb] of parts.entries()) {
          const o = await runRank(p, mb, r === out, picks[i], host, kvCache.blockSize);
          if (o) results.push(o);
        }
        return results;
      }));
      return concat(outs[out]);
    } catch (e) {
      await closeGroups(groups); // the other ranks would wait for the failed one forever
      throw e;
    }
  };
  return {
    ...pickingProgram(step, ranksChain(plan)),
    expertLoad: () => gatherExpertLoad(plan, async (r) => (await programs[r].expertLoad?.()) ?? null),
    async dispose() {
      await closeGroups(groups);
      await Promise.all(programs.map((p) => p.dispose()));
    },
  };
}
