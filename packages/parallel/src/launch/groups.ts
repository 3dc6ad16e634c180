// The communicator groups of a rank grid: one tensor group per pipeline stage (its tensor ranks) and
// one pipeline group per tensor rank (the same tensor rank of every stage).
import type { Communicator, ParallelPlan } from '@zinfer/core';
import { relayCommunicator, type RelaySpec } from '../multi-node/relay-communicator.js';
import { createShmGroup, shmCommunicator, type ShmGroup } from '../shm-communicator.js';

export interface RankPlace {
  stage: number;
  tensorRank: number;
}

export interface GridGroups {
  tensorSize: number;
  stages: number;
  /** Indexed by stage; null for the stages of other nodes (multi-node). */
  tensor: (ShmGroup | null)[];
  /** Indexed by tensor rank; empty when the pipeline groups cross nodes (each rank then has a relay). */
  pipeline: ShmGroup[];
}

export function placeOf(rank: number, tensorSize: number): RankPlace {
  return { stage: Math.floor(rank / tensorSize), tensorRank: rank % tensorSize };
}

/** The rank whose output is the model's output: the last stage's tensor rank 0. */
export function outputRank(plan: ParallelPlan): number {
  return (plan.stages - 1) * (plan.ranks.length / plan.stages);
}

export function createGridGroups(plan: ParallelPlan): GridGroups {
  const tensorSize = plan.ranks.length / plan.stages;
  return {
    tensorSize,
    stages: plan.stages,
    tensor: Array.from({ length: plan.stages }, () => createShmGroup(tensorSize)),
    pipeline: Array.from({ length: tensorSize }, () => createShmGroup(plan.stages)),
  };
}

/** The groups of one node's ranks [first, end) when the stages are spread over nodes: its stages' tensor groups. */
export function createNodeGroups(tensorSize: number, stages: number, first: number, end: number): GridGroups {
  return {
    tensorSize,
    stages,
    tensor: Array.from({ length: stages }, (_, s) => (s * tensorSize >= first && s * tensorSize < end ? createShmGroup(tensorSize) : null)),
    pipeline: [],
  };
}

/** The communicators a rank compiles with (only those its graph needs are used); `relay` carries its pipeline group across nodes. */
export function rankCommunicators(groups: GridGroups, rank: number, relay: RelaySpec | null = null): { communicator: Communicator; pipeline: Communicator } {
  const { stage, tensorRank } = placeOf(rank, groups.tensorSize);
  const tensor = groups.tensor[stage];
  if (!tensor) throw new RangeError(`rank ${rank}: its stage ${stage} has no tensor group on this node`);
  return { communicator: shmCommunicator(tensor, tensorRank), pipeline: relay ? relayCommunicator(relay, rank) : shmCommunicator(groups.pipeline[tensorRank], stage) };
}

/** Closes every group, so no rank keeps waiting for a failed or disposed one. */
export async function closeGroups(groups: GridGroups): Promise<void> {
  for (const g of [...groups.tensor, ...groups.pipeline]) if (g) await shmCommunicator(g, 0).close();
}
