// launchPlan's multi-node path, on RANK 0: its own ranks [0, L) start as worker threads as in a
// single-node launch; each follower gets the inits of its ranks and starts them the same way. Steps, the
// step timeout, faults and dispose are rank-program.ts's, over local Workers and RemoteRanks alike.
import { BackendError, type LaunchArgs, type Program, type StepBatch } from '@zinfer/core';
import type { KvOffloadOptions } from '../kv-offload/compile-rank.js';
import { closeGroups, outputRank } from '../launch/groups.js';
import { abortNcclGrid, createNcclGrid, rankFactory } from '../launch/nccl-grid.js';
import { startRanks } from '../launch/rank-program.js';
import { ABORT_GRACE_MS } from '../launch/workers.js';
import { NodeLeader } from './cluster.js';
import type { NodeOptions } from './env.js';
import type { WireRankInit } from './messages.js';
import { spawnNodeRanks, type NodeRanks } from './node-ranks.js';
import { checkHostSplit, nodeOf, ranksOf, ranksPerNode } from './node-split.js';
import { RelayRouter } from './relay-router.js';
import { RemoteNode } from './remote-ranks.js';

export interface MultiNodeLaunchOptions {
  nodes: NodeOptions;
  timeoutMs?: number;
  kvOffload?: KvOffloadOptions | null;
}

let launches = 0;

export async function launchMultiNode(args: LaunchArgs, microBatches: (batch: StepBatch) => number, o: MultiNodeLaunchOptions): Promise<Program> {
  const { plan, backend, kvCache, model } = args;
  const factory = backend.factory;
  if (!factory) throw new BackendError(`backend ${backend.name} cannot run on several nodes: it has no factory`, { field: 'backend.factory', expected: '{ module, exportName }', found: 'none' });
  const worldSize = o.nodes.worldSize;
  const perNode = ranksPerNode(plan.ranks.length, worldSize);
  const device = backend.deviceCollectives === 'nccl';
  if (!device) checkHostSplit(plan, perNode, worldSize);
  const timeoutMs = o.timeoutMs ?? 30_000;
  const peers = await (await NodeLeader.for(o.nodes)).followers();
  const nccl = device ? createNcclGrid(plan, factory, { ranksPerNode: perNode, followerDevices: peers.map((p) => p.hello.devices) }) : null;
  const out = outputRank(plan);
  const inits: WireRankInit[] = plan.ranks.map((rank, r) => ({
    rank: r, factory: nccl ? rankFactory(factory, nccl.firstDevice + (r % perNode)) : factory, graph: rank.graph, shards: [...rank.shards],
    model, kvCache, kvOffload: o.kvOffload ?? null, nccl: nccl && { ...nccl, cells: undefined }, returnsOutput: r === out,
  }));
  const shape = { tensorSize: plan.ranks.length / plan.stages, stages: plan.stages, timeoutMs };
  const launch = ++launches;

  const router = new RelayRouter((src, dst, data) => nodes[nodeOf(dst, perNode) - 1].send({ type: 'relay', launch, src, dst, data }));
  const nodes = peers.map((peer, i) => new RemoteNode(peer, launch, ranksOf(i + 1, perNode), router));
  nodes.forEach((n, i) => n.send({ type: 'launch', launch, inits: inits.slice((i + 1) * perNode, (i + 2) * perNode), ...shape }));
  const local: NodeRanks = spawnNodeRanks(inits.slice(0, perNode), shape, router, nccl);
  const links = [...local.workers, ...nodes.flatMap((n) => n.ranks)];

  return startRanks({
    links, plan, microBatches, timeoutMs,
    abort: (exited) => {
      // Host ranks wait in shared-memory groups and in relays: both must be woken (single-node only needs the first).
      for (const [r, w] of local.workers.entries()) if (!exited.has(r)) w.postMessage({ type: 'abort' });
      if (local.groups) void closeGroups(local.groups);
      if (nccl) setTimeout(() => abortNcclGrid(nccl), ABORT_GRACE_MS).unref();
      for (const n of nodes) n.abort();
    },
    release: async () => {
      if (local.groups) await closeGroups(local.groups);
      router.close();
      for (const n of nodes) n.detach();
    },
    abandon: () => nccl && abortNcclGrid(nccl),
  });
}
