// Starting one node's ranks as worker threads (the same rank-worker as single-node launches), on the
// leader and on followers alike: host ranks get this node's shared-memory tensor groups and a relay port
// for their pipeline group; NCCL ranks get the grid with this process's communicator cells.
import { MessageChannel, type Worker } from 'node:worker_threads';
import { createNodeGroups, type GridGroups } from '../launch/groups.js';
import type { NcclGrid } from '../launch/nccl-grid.js';
import { spawnRank } from '../launch/workers.js';
import { createCommCells } from '../nccl/comm-cell.js';
import type { WireRankInit } from './messages.js';
import type { RelayRouter } from './relay-router.js';

export interface NodeRanks {
  workers: Worker[];
  /** Host ranks: this node's tensor groups. */
  groups: GridGroups | null;
  /** NCCL ranks: the grid with this process's cells (for the last-resort abort). */
  nccl: NcclGrid | null;
}

export interface NodeShape {
  tensorSize: number;
  stages: number;
  /** The relay's wait for a peer's activation (the step timeout). */
  timeoutMs: number;
}

/** `inits`: this node's ranks, contiguous; `nccl`: the grid to use as is (the leader's), else one is made from the wire grid. */
export function spawnNodeRanks(inits: WireRankInit[], shape: NodeShape, router: RelayRouter, nccl?: NcclGrid | null): NodeRanks {
  const wire = inits[0].nccl;
  if (wire) {
    const grid = nccl ?? { ...wire, cells: createCommCells(2 * wire.tensorSize * wire.stages) };
    return { workers: inits.map((init) => spawnRank({ ...init, nccl: grid, groups: null, relay: null })), groups: null, nccl: grid };
  }
  const first = inits[0].rank;
  const groups = createNodeGroups(shape.tensorSize, shape.stages, first, first + inits.length);
  const workers = inits.map((init) => {
    const { port1, port2 } = new MessageChannel();
    router.attach(init.rank, port1);
    const relay = { port: port2, tensorSize: shape.tensorSize, stages: shape.stages, timeoutMs: shape.timeoutMs };
    return spawnRank({ ...init, nccl: null, groups, relay }, [port2]);
  });
  return { workers, groups, nccl: null };
}
