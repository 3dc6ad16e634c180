// The communicator groups of a rank grid: one tensor group per pipeline stage (its tensor ranks) and
// one pipeline group per tensor rank (the same tensor rank of every stage).
import type { Communicator, ParallelPlan } from '@zinfer/core';
import { createShmGroup, shmCommunicator, type ShmGroup } from '../shm-communicator.js';

export interface RankPlace {
  stage: number;
  tensorRank: number;
}

export interface GridGroups {
  tensorSize: number;
  stages: number;
  /** Indexed by stage. */
  tensor: ShmGroup[];
  /** Indexed by tensor rank. */
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

/** The communicators a rank compiles with (only those its graph needs are used). */
export function rankCommunicators(groups: GridGroups, rank: number): { communicator: Communicator; pipeline: Communicator } {
  const { stage, tensorRank } = placeOf(rank, groups.tensorSize);
  return { communicator: shmCommunicator(groups.tensor[stage], tensorRank), pipeline: shmCommunicator(groups.pipeline[tensorRank], stage) };
}

/** Closes every group, so no rank keeps waiting for a failed or disposed one. */
export async function closeGroups(groups: GridGroups): Promise<void> {
  for (const g of [...groups.tensor, ...groups.pipeline]) await shmCommunicator(g, 0).close();
}
