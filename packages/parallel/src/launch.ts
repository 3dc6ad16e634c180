// Starting a plan's ranks, for strategies defined in other packages (expert parallelism in @zinfer/moe):
// the same grid launcher tensorParallel and pipelineParallel use. With several node processes (options
// `nodes`, or WORLD_SIZE > 1 in the environment) the ranks are spread over them; this process is RANK 0.
import { ConfigError, type LaunchArgs, type Program, type StepBatch } from '@zinfer/core';
import type { KvOffloadOptions } from './kv-offload/compile-rank.js';
import { launchInline } from './launch/inline.js';
import { launchWorkers } from './launch/workers.js';
import { nodeOptions, type NodeOptions } from './multi-node/env.js';
import { launchMultiNode } from './multi-node/leader.js';

export interface LaunchOptions {
  /** 'workers' (default): one worker thread per rank; 'inline': all ranks on this thread. */
  ranks?: 'workers' | 'inline';
  /** Micro-batches per step (pipeline plans); default 1. */
  microBatches?: (batch: StepBatch) => number;
  /** Worker ranks: a step not finished by every rank within this many ms fails as a hung rank (default 30 000). */
  timeoutMs?: number;
  /** Node processes to spread the ranks over (default: WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT from the environment; none when WORLD_SIZE is unset or 1). */
  nodes?: NodeOptions | null;
  /**
   * Pipeline plans with worker ranks: let an engine keep one step a stage in flight (Program.concurrentSteps,
   * default true); false: one step at a time, each split into micro-batches only.
   */
  crossStep?: boolean;
  /** Each rank keeps this many KV-cache blocks on its device and the engine's block pool in host memory (checked by the strategy). */
  kvOffload?: KvOffloadOptions | null;
}

export function launchPlan(args: LaunchArgs, opts: LaunchOptions = {}): Promise<Program> {
  const launched = launchRanksOf(args, opts);
  return opts.crossStep === false ? launched.then((p) => Object.assign(p, { concurrentSteps: 1 })) : launched;
}

function launchRanksOf(args: LaunchArgs, opts: LaunchOptions): Promise<Program> {
  const micro = opts.microBatches ?? (() => 1);
  if (args.backend.deviceCollectives && opts.ranks === 'inline') {
    return Promise.reject(new ConfigError(`backend ${args.backend.name} runs one rank per device, each in its own thread`, { field: 'parallel.ranks', expected: "'workers'", found: "'inline'" }));
  }
  let nodes: NodeOptions | null;
  try {
    nodes = opts.nodes === undefined ? nodeOptions() : opts.nodes;
  } catch (e) {
    return Promise.reject(e);
  }
  if (nodes && nodes.worldSize > 1) {
    if (opts.ranks === 'inline') return Promise.reject(new ConfigError('ranks on several nodes run in worker threads', { field: 'parallel.ranks', expected: "'workers'", found: "'inline'" }));
    return launchMultiNode(args, micro, { nodes, timeoutMs: opts.timeoutMs, kvOffload: opts.kvOffload });
  }
  return opts.ranks === 'inline' || args.plan.ranks.length === 1 ? launchInline(args, micro, opts.kvOffload) : launchWorkers(args, micro, { timeoutMs: opts.timeoutMs, kvOffload: opts.kvOffload });
}
