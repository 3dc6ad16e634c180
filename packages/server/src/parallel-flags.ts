// --tp, --pp, --ep and --dp as the engine config's `parallel` strategy; --nnodes, --node-rank,
// --master-addr and --master-port (or torchrun's WORLD_SIZE, RANK, MASTER_ADDR, MASTER_PORT) spread its
// ranks over node processes.
import { Option } from 'commander';
import { ConfigError, type ParallelStrategy } from '@zinfer/core';
import { contiguousPlacement, expertParallel } from '@zinfer/moe';
import { dataParallel, nodeOptions, pipelineParallel, tensorParallel, type NodeFlags, type NodeOptions } from '@zinfer/parallel';
import { parseCount, parseInteger } from './parse-flags.js';

export interface ParallelFlags extends NodeFlags {
  tp: number;
  pp: number;
  ep: number;
  /** Data-parallel ranks (default 1). */
  dp?: number;
  /** --ep-dispatch: how expert outputs meet (default all-reduce). */
  epDispatch?: 'all-reduce' | 'all-to-all';
  /** --ep-coordinated: the coordinated all-to-all (with --tp > 1). */
  epCoordinated?: boolean;
  /** --kv-offload-blocks: with --pp, KV-cache blocks each rank keeps on its device (the rest in host memory). */
  kvOffloadBlocks?: number;
}

/** --tp, --pp, --ep, --ep-dispatch, --ep-coordinated and --dp, for the generate and serve commands. */
export function parallelOptions(): Option[] {
  return [
    new Option('--tp <n>', 'tensor-parallel ranks (one worker thread each)').default(1).argParser(parseCount),
    new Option('--pp <n>', 'pipeline-parallel stages (each --tp ranks wide)').default(1).argParser(parseCount),
    new Option('--ep <n>', 'expert-parallel ranks (Mixture-of-Experts models)').default(1).argParser(parseCount),
    new Option('--ep-dispatch <mode>', "with --ep: experts' outputs meet by one all-reduce, or by all-to-all dispatch and combine").choices(['all-reduce', 'all-to-all']).default('all-reduce'),
    new Option('--ep-coordinated', 'with --ep-dispatch all-to-all and --tp > 1: exchange only across expert groups, then all-gather (coordinated all-to-all)'),
    new Option('--kv-offload-blocks <n>', 'with --pp: KV-cache blocks each rank keeps on its device; the rest of the KV cache lives in host memory, the next micro-batch loading while one runs').argParser(parseCount),
    new Option('--dp <n>', 'data-parallel ranks, each running the whole model on its own sequences; with --offload each fetches 1/n of every layer').default(1).argParser(parseCount),
    new Option('--nnodes <n>', 'node processes the --tp/--pp ranks are spread over (env WORLD_SIZE; default 1)').argParser(parseCount),
    new Option('--node-rank <k>', 'this node process: 0 runs the engine, others serve their ranks to it (env RANK)').argParser(parseInteger),
    new Option('--master-addr <host>', 'where node 0 listens for the other nodes (env MASTER_ADDR; default 127.0.0.1)'),
    new Option('--master-port <port>', 'its port (env MASTER_PORT; default 29500)').argParser(parseCount),
  ];
}

/** The node settings of the flags and environment; null for a single-node run. */
export function nodesFromFlags(o: ParallelFlags, env: NodeJS.ProcessEnv = process.env): NodeOptions | null {
  return nodeOptions({ nnodes: o.nnodes, nodeRank: o.nodeRank, masterAddr: o.masterAddr, masterPort: o.masterPort }, env);
}

/** The strategy the flags ask for, or undefined for a single device. */
export function parallelFromFlags(o: ParallelFlags, env: NodeJS.ProcessEnv = process.env): ParallelStrategy | undefined {
  const { tp, pp, ep, dp = 1, epDispatch, epCoordinated, kvOffloadBlocks } = o;
  if (kvOffloadBlocks !== undefined && pp <= 1) {
    throw new ConfigError('--kv-offload-blocks offloads the KV cache of pipeline stages', { field: 'kv-offload-blocks', expected: '--pp 2 or more with --kv-offload-blocks', found: `--pp ${pp}` });
  }
  const nodes = nodesFromFlags(o, env);
  if (nodes && (dp > 1 || ep > 1 || tp * pp === 1)) {
    throw new ConfigError(`ranks on ${nodes.worldSize} nodes need a --tp/--pp plan`, { field: 'nnodes', expected: '--tp and/or --pp with at least one rank per node (no --dp or --ep yet)', found: `--tp ${tp} --pp ${pp} --ep ${ep} --dp ${dp} --nnodes ${nodes.worldSize}` });
  }
  if (dp > 1) {
    if (tp > 1 || pp > 1 || ep > 1) throw new ConfigError('--dp does not combine with --tp, --pp or --ep yet', { field: 'dp', expected: '--tp 1 --pp 1 --ep 1 with --dp', found: `--tp ${tp} --pp ${pp} --ep ${ep} --dp ${dp}` });
    return dataParallel({ size: dp });
  }
  if (ep > 1) {
    // --tp with --ep: tp × ep ranks, dense weights sliced over all of them, each expert sliced over tp.
    if (pp > 1) throw new ConfigError('--ep does not combine with --pp yet', { field: 'ep', expected: '--pp 1 with --ep', found: `--pp ${pp} --ep ${ep}` });
    return expertParallel({ size: ep * tp, tensor: tp, placement: contiguousPlacement(), dispatch: epDispatch, coordinated: epCoordinated });
  }
  if (epDispatch === 'all-to-all' || epCoordinated) throw new ConfigError('--ep-dispatch and --ep-coordinated need --ep', { field: 'ep', expected: '--ep > 1', found: `--ep ${ep}` });
  if (pp > 1) return pipelineParallel({ stages: pp, tensorSize: tp, nodes, ...(kvOffloadBlocks !== undefined ? { kvOffload: { deviceBlocks: kvOffloadBlocks } } : {}) });
  if (tp > 1) return tensorParallel({ size: tp, nodes });
  return undefined;
}
