// Which node hosts which ranks: contiguous blocks, node k hosting global ranks [k·L, (k+1)·L) with
// L = ranks ÷ nodes. Ranks are stage-major, so whole stages (or whole tensor groups) land on one node
// whenever the sizes allow it.
import { ConfigError, type ParallelPlan } from '@zinfer/core';

export function ranksPerNode(ranks: number, worldSize: number): number {
  if (ranks % worldSize !== 0 || ranks < worldSize) {
    throw new ConfigError(`the parallel plan's ${ranks} ranks do not split evenly over ${worldSize} nodes`, {
      field: '--nnodes', expected: `a node count that divides the ${ranks} ranks (--tp × --pp)`, found: `${worldSize} nodes (WORLD_SIZE)`,
    });
  }
  return ranks / worldSize;
}

export function nodeOf(rank: number, perNode: number): number {
  return Math.floor(rank / perNode);
}

/** Global ranks of node k. */
export function ranksOf(node: number, perNode: number): number[] {
  return Array.from({ length: perNode }, (_, i) => node * perNode + i);
}

/**
 * Host backends (cpu, reference) communicate through shared memory, which exists only inside one process:
 * every tensor group must sit inside one node (--tp divides the ranks per node); only the pipeline's
 * point-to-point transfers cross nodes (relayed).
 */
export function checkHostSplit(plan: ParallelPlan, perNode: number, worldSize: number): void {
  const tensorSize = plan.ranks.length / plan.stages;
  if (perNode % tensorSize === 0) return;
  throw new ConfigError(`on host backends a tensor group cannot span nodes: ${tensorSize} tensor ranks per stage, ${perNode} ranks per node`, {
    field: '--tp / --nnodes', expected: `--tp dividing the ${perNode} ranks of each node (--pp at least --nnodes), or a CUDA backend (NCCL)`, found: `--tp ${tensorSize} --pp ${plan.stages} --nnodes ${worldSize}`,
  });
}
