// The parallel strategies: tensorParallel (slicing), pipelineParallel (stages, optionally each sliced,
// optionally with each rank's KV cache offloaded to host memory: kv-offload/). plan() is pure; launch()
// starts the ranks.
import { CONTRACT_VERSION, ConfigError, type Graph, type LaunchArgs, type ParallelPlan, type ParallelStrategy, type StepBatch } from '@zinfer/core';
import { checkKvOffload, type KvOffloadOptions } from './kv-offload/compile-rank.js';
import { launchPlan, type LaunchOptions } from './launch.js';
import type { NodeOptions } from './multi-node/env.js';
import { planPipeline } from './pipeline-parallel/plan.js';
import { planTensorParallel } from './tensor-parallel/plan.js';

export interface TensorParallelOptions {
  /** Number of ranks (devices) the model is sliced over. */
  size: number;
  /** 'workers' (default): one worker thread per rank, each with its own backend; 'inline': all ranks on this thread. */
  ranks?: 'workers' | 'inline';
  /** Worker ranks: a step that some rank does not finish within this many ms fails as a hung rank (default 30 000). */
  timeoutMs?: number;
  /** Ranks spread over node processes (this one is RANK 0); default from the environment (WORLD_SIZE, ...). */
  nodes?: NodeOptions | null;
}

export interface PipelineParallelOptions {
  /** Number of pipeline stages (contiguous groups of layers). */
  stages: number;
  /** Tensor slicing inside each stage (default 1). */
  tensorSize?: number;
  ranks?: 'workers' | 'inline';
  timeoutMs?: number;
  nodes?: NodeOptions | null;
  /**
   * The hybrid schedule: micro-batches per step while prompts are processed (more, smaller ones keep the
   * stages busy on long inputs) and for decode-only steps (fewer, larger ones). Defaults: 2 × stages, stages.
   */
  promptMicroBatches?: number;
  decodeMicroBatches?: number;
  /**
   * Across steps (default true): an engine stepping on its own keeps one step a stage in flight, each over
   * its own sequences, so a sequence's next token enters stage 0 as soon as its step is back. false: one
   * step at a time (the micro-batches above only).
   */
  crossStep?: boolean;
  /**
   * KV-cache offload to host memory with double buffering: each rank keeps `deviceBlocks` KV-cache blocks
   * on its device and the engine's whole block pool (limits.kvCacheBytes) in host memory (page-locked on
   * CUDA), so a stage serves more and longer sequences than its device cache holds. Before a micro-batch
   * runs, its blocks are loaded (least recently used ones saved out to make room); the next micro-batch's
   * blocks load while one computes. deviceBlocks must hold one micro-batch's blocks (two for the overlap);
   * a micro-batch needing more fails with a ConfigError naming parallel.kvOffload.deviceBlocks. Needs a
   * backend whose programs have kvBlocks (reference, cpu, cuda).
   */
  kvOffload?: KvOffloadOptions;
}

export type { KvOffloadOptions };

export type Strategy = ParallelStrategy & { contractVersion: number };

export function tensorParallel(opts: TensorParallelOptions): Strategy {
  return gridStrategy(`tensor-parallel(${opts.size})`, 1, opts.size, { ranks: opts.ranks, timeoutMs: opts.timeoutMs, nodes: opts.nodes, microBatches: () => 1 });
}

export function pipelineParallel(opts: PipelineParallelOptions): Strategy {
  const tp = opts.tensorSize ?? 1;
  const prompt = opts.promptMicroBatches ?? 2 * opts.stages;
  const decode = opts.decodeMicroBatches ?? opts.stages;
  for (const [field, n] of [['promptMicroBatches', prompt], ['decodeMicroBatches', decode]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new ConfigError('invalid micro-batch count', { field: `parallel.${field}`, expected: 'a positive integer', found: String(n) });
  }
  const kvOffload = checkKvOffload(opts.kvOffload);
  const microBatches = (b: StepBatch) => (b.sequences.some((s) => s.queryLength > 1) ? prompt : decode);
  return gridStrategy(`pipeline-parallel(${opts.stages}${tp > 1 ? ` × tp ${tp}` : ''}${kvOffload ? `, kv offload ${kvOffload.deviceBlocks} blocks` : ''})`, opts.stages, tp, { ranks: opts.ranks, timeoutMs: opts.timeoutMs, nodes: opts.nodes, microBatches, crossStep: opts.crossStep, kvOffload });
}

function gridStrategy(name: string, stages: number, tp: number, launch: LaunchOptions): Strategy {
  return {
    name,
    contractVersion: CONTRACT_VERSION,
    ranks: stages * tp,
    plan: (graph: Graph): ParallelPlan => {
      const ranks = planPipeline(graph, stages).flatMap((stage) => planTensorParallel(stage, tp).ranks);
      return { ranks, stages };
    },
    launch: (args: LaunchArgs) => launchPlan(args, launch),
  };
}
