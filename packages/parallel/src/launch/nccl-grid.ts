// NCCL communicators for a rank grid (backends with deviceCollectives 'nccl'): the leader makes one
// ncclUniqueId per group, one-rank groups included (a pipeline stage without tensor slicing still has
// its graph's identity all-reduces, and a one-rank NCCL communicator runs them as device copies) (a tensor group per stage, a pipeline group per tensor
// rank, as groups.ts lays them out) and checks there is a device for every rank; each rank's worker makes
// its device current and joins its groups. Handles live in shared cells so the leader can abort a stuck rank.
import { BackendError, ConfigError, type BackendFactory, type ParallelPlan } from '@zinfer/core';
import { Nccl } from '../nccl/api.js';
import { abortCells, CommCell, createCommCells, type CommCells } from '../nccl/comm-cell.js';
import { NcclCommunicator } from '../nccl/communicator.js';
import { bindDevice, cudaDeviceCount } from '../nccl/cuda-context.js';
import { placeOf } from './groups.js';

export interface NcclGrid {
  tensorSize: number;
  stages: number;
  /** Device of rank 0; rank r runs on firstDevice + r (multi-node: firstDevice + its index on its node). */
  firstDevice: number;
  /** Ranks per node process (multi-node); absent when every rank is a thread of one process. */
  ranksPerNode?: number;
  /** ncclUniqueId of each stage's tensor group. */
  tensorIds: (Uint8Array | null)[];
  /** ncclUniqueId of each tensor rank's pipeline group. */
  pipelineIds: (Uint8Array | null)[];
  /** Two cells a rank: its tensor communicator, then its pipeline communicator. */
  cells: CommCells;
}

export interface RankComms {
  communicator?: NcclCommunicator;
  pipeline?: NcclCommunicator;
}

/** The device of the backend's first rank: `device` in its factory options, default 0. */
export function firstDeviceOf(factory: BackendFactory): number {
  const o = factory.options;
  if (o !== undefined && (typeof o !== 'object' || o === null)) throw new ConfigError('a backend with device collectives needs object factory options', { field: 'backend.factory.options', expected: 'an object or nothing', found: typeof o });
  const d = (o as { device?: unknown } | undefined)?.device ?? 0;
  if (!(typeof d === 'number' && Number.isInteger(d) && d >= 0)) throw new ConfigError('invalid first device', { field: 'backend.factory.options.device', expected: 'an integer ≥ 0', found: String(d) });
  return d;
}

/** The factory that makes rank r's backend: the same options on device firstDevice + r. */
export function rankFactory(factory: BackendFactory, device: number): BackendFactory {
  return { ...factory, options: { ...(factory.options as object | undefined), device } };
}

/** Multi-node grids: ranks per node, and the devices each follower node sees (node k at index k - 1). */
export interface GridNodes {
  ranksPerNode: number;
  followerDevices: number[];
}

export function createNcclGrid(plan: ParallelPlan, factory: BackendFactory, nodes?: GridNodes): NcclGrid {
  const ranks = plan.ranks.length;
  const firstDevice = firstDeviceOf(factory);
  const local = nodes?.ranksPerNode ?? ranks;
  // Every node checks its own devices: node k's ranks run on its devices firstDevice.. firstDevice + local - 1.
  for (const [k, devices] of [cudaDeviceCount(), ...(nodes?.followerDevices ?? [])].entries()) {
    if (firstDevice + local <= devices) continue;
    const where = nodes ? `node ${k} runs ${local} ranks from device ${firstDevice}` : `the parallel plan needs ${ranks} GPUs from device ${firstDevice}`;
    throw new ConfigError(`${where}, and ${devices} are visible${nodes ? ' there' : ''}`, {
      field: 'parallel', expected: `at most ${devices - firstDevice} ranks${nodes ? ` on node ${k}` : ''} (one GPU each)`, found: `${local} ranks`,
    });
  }
  const nccl = Nccl.load(); // here first, so NCCL reads its environment (NCCL_NVLS_ENABLE=0) on this thread
  const tensorSize = ranks / plan.stages;
  const idFor = (_size: number): Uint8Array | null => nccl.uniqueId();
  return {
    tensorSize,
    stages: plan.stages,
    firstDevice,
    ...(nodes ? { ranksPerNode: local } : {}),
    tensorIds: Array.from({ length: plan.stages }, () => idFor(tensorSize)),
    pipelineIds: Array.from({ length: tensorSize }, () => idFor(plan.stages)),
    cells: createCommCells(2 * ranks),
  };
}

/**
 * On rank r's thread: makes its device current and joins its tensor group, then its pipeline group
 * (every rank joins in that order, so the blocking joins cannot wait on each other in a cycle).
 */
export function joinNcclGrid(grid: NcclGrid, rank: number): RankComms {
  const local = grid.ranksPerNode ?? grid.tensorSize * grid.stages;
  bindDevice(grid.firstDevice + (rank % local));
  const nccl = Nccl.load();
  const { stage, tensorRank } = placeOf(rank, grid.tensorSize);
  const join = (id: Uint8Array | null, size: number, at: number, cellIndex: number, devices?: number[]) => {
    if (!id) return undefined;
    const cell = new CommCell(grid.cells, cellIndex);
    const comm = nccl.initRank(size, id, at);
    if (!cell.publish(comm)) {
      nccl.api.ncclCommAbort(comm); // the leader gave up on the grid while this rank was joining
      throw new BackendError(`rank ${rank} joined its NCCL group after the launch was abandoned`);
    }
    return new NcclCommunicator(nccl, cell, at, size, devices);
  };
  // The tensor group's devices when its ranks are threads of this process, so they may share peer memory;
  // a group that spans nodes has no common address space.
  const first = stage * grid.tensorSize;
  const oneNode = Math.floor(first / local) === Math.floor((first + grid.tensorSize - 1) / local);
  const tensorDevices = oneNode ? Array.from({ length: grid.tensorSize }, (_, t) => grid.firstDevice + ((first + t) % local)) : undefined;
  const communicator = join(grid.tensorIds[stage], grid.tensorSize, tensorRank, 2 * rank, tensorDevices);
  const pipeline = join(grid.pipelineIds[tensorRank], grid.stages, stage, 2 * rank + 1);
  return { communicator, pipeline };
}

/** The leader's last resort: aborts every communicator of the grid still live (their owners are stuck). */
export function abortNcclGrid(grid: NcclGrid): void {
  abortCells(Nccl.load(), grid.cells);
}
