// Data-parallel ranks on this thread: every rank compiles the whole graph and runs its own sequences;
// with offload, each rank places the weights with its FetchShard, so its tier holds 1/size of every
// streamed layer and the ranks' all-gathers (shared memory here) assemble each layer for all of them.
// Each rank's KV cache has one block more than the engine's: the scratch block of idle steps.
import { HostRowSampler, type Communicator, type LaunchArgs, type OffloadPlacement, type Program } from '@zinfer/core';
import { pickingProgram, runPicked, type PickStep } from '../launch/rank-pick.js';
import { createShmGroup, shmCommunicator } from '../shm-communicator.js';
import { idleBatch, mergeOutputs, partPick, RankAssigner } from './rank-batches.js';

export interface DataParallelProgram extends Program {
  /** Each rank's offload placement (empty without offload). */
  readonly placements: readonly OffloadPlacement[];
}

export async function launchDataParallel(args: LaunchArgs, size: number): Promise<DataParallelProgram> {
  const { backend, weights, kvCache, offload } = args;
  const graph = args.plan.ranks[0].graph;
  const group = createShmGroup(size);
  const comms: Communicator[] = Array.from({ length: size }, (_, r) => shmCommunicator(group, r));
  const placements: OffloadPlacement[] = [];
  const programs: Program[] = [];
  const rankCache = { ...kvCache, numBlocks: kvCache.numBlocks + 1 };
  try {
    for (let r = 0; r < size; r++) {
      const placed = offload ? await offload.place({ graph, weights, backend, shard: { rank: r, size, communicator: comms[r] } }) : null;
      if (placed) placements.push(placed);
      programs.push(await backend.compile(graph, placed?.resident ?? weights, { kvCache: rankCache, ...(placed?.stream ? { stream: placed.stream } : {}) }));
    }
  } catch (e) {
    await release(programs, placements, comms);
    throw e;
  }
  const assigner = new RankAssigner(size);
  const idle = idleBatch(kvCache.numBlocks, kvCache.blockSize);
  const host = new HostRowSampler();
  const step: PickStep = async (batch, pick) => {
    const parts = assigner.split(batch);
    try {
      const outs = await Promise.all(programs.map((p, r) => {
        const b = parts[r]?.batch ?? idle;
        const own = partPick(pick, parts[r]);
        return own ? runPicked(p, b, own, host) : p.run(b);
      }));
      return mergeOutputs(parts, outs, batch.selectedRows.length);
    } catch (e) {
      await Promise.all(comms.map((c) => c.close())); // the other ranks would wait in their all-gathers forever
      throw e;
    }
  };
  return {
    placements,
    ...(placements.length ? { offload: summaryPlacement(placements) } : {}),
    // Greedy and sampled steps copy only each row's token id from every rank (launch/rank-pick.ts).
    ...pickingProgram(step),
    dispose: () => release(programs, placements, comms),
  };
}

async function release(programs: Program[], placements: OffloadPlacement[], comms: Communicator[]): Promise<void> {
  await Promise.all(comms.map((c) => c.close()));
  await Promise.all(programs.map((p) => p.dispose()));
  await Promise.all(placements.map((p) => p.close()));
}

/** What the engine shows as its placement: rank 0's, with every other rank's lines that differ from it. */
function summaryPlacement(placements: readonly OffloadPlacement[]): OffloadPlacement {
  const [first] = placements;
  const summary = [...first.summary, ...placements.slice(1).flatMap((p) => p.summary.filter((l) => !first.summary.includes(l)))];
  return { resident: first.resident, stream: first.stream, summary, timeline: () => first.timeline(), close: async () => {} }; // the program closes the ranks' placements
}
