// The control messages between the leader and a follower node (on the store connection, as 'msg' frames).
// Every message names its launch, so what is left of an earlier launch is ignored.
import type { StepBatch } from '@zinfer/core';
import type { NcclGrid } from '../launch/nccl-grid.js';
import type { RankPick } from '../launch/rank-pick.js';
import type { RankInit, RankReply, RankRequest } from '../rank-worker.js';

/** A rank's init as it travels: shared memory does not cross processes, so the follower makes its own groups and NCCL cells. */
export type WireRankInit = Omit<RankInit, 'nccl' | 'groups' | 'relay'> & { nccl: Omit<NcclGrid, 'cells'> | null };

export type ToFollower =
  /** Start this node's ranks (grid: the plan's shape, for the node's shared-memory groups and relays). */
  | { type: 'launch'; launch: number; inits: WireRankInit[]; tensorSize: number; stages: number; timeoutMs: number }
  /** A step's micro-batch, for every rank of the node (one frame per node, not per rank). */
  | { type: 'run'; launch: number; id: number; batch: StepBatch; pick?: RankPick }
  | { type: 'post'; launch: number; rank: number; msg: RankRequest }
  | { type: 'terminate'; launch: number; rank: number }
  /** A rank failed: stop every communicator of the node (as the leader does for its own ranks). */
  | { type: 'abort'; launch: number }
  | { type: 'relay'; launch: number; src: number; dst: number; data: Float32Array };

export type ToLeader =
  | { type: 'reply'; launch: number; rank: number; reply: RankReply }
  | { type: 'rankError'; launch: number; rank: number; message: string }
  | { type: 'rankExit'; launch: number; rank: number; code: number }
  | { type: 'relay'; launch: number; src: number; dst: number; data: Float32Array };
