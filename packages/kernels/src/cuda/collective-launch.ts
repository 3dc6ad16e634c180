// The communication nodes of tensor and pipeline parallelism on a GPU: NCCL (through the communicators'
// device collectives) enqueued on the program's stream over the values' device buffers, in the activation
// dtype, so they order with the kernels and a decode step's CUDA graph captures them too. allReduce sums
// out of place (x → out); allGather lands [ranks, rows, width] and is interleaved into [rows, ranks·width]
// (one row needs no interleave); send passes x on and copies it to its output value; recv fills its value.
import { BackendError, COLLECTIVE_KINDS, type CompileOptions, type DeviceCollectives, type FloatDType, type Graph, type OpNode, type ValueId } from '@zinfer/core';
import type { ReduceAdd } from './exec-plan.js';
import type { PeerAllReduce } from './peer-allreduce.js';
import { peerPush } from './linear-launch.js';
import { launchMoeExchange } from './moe-exchange-launch.js';
import { dtypeBytes, flatGrid, type StepContext } from './step-context.js';

export interface ProgramCollectives {
  /** The tensor-parallel group (allReduce, allGather). */
  tensor: DeviceCollectives | null;
  /** The pipeline group (send, recv). */
  pipeline: DeviceCollectives | null;
  /** This rank's index in the tensor group (the MoE all-to-all's layout). */
  rank?: number;
  /** The tensor group's peer-memory all-reduce (small messages), set up at compile; else NCCL only. */
  peer?: PeerAllReduce | null;
}

type CommunicationNode = OpNode<'allReduce' | 'allGather' | 'send' | 'recv' | 'moeDispatch' | 'moeCombine'>;

/** The device collectives the graph's communication nodes need; refuses host-only communicators clearly. */
export function programCollectives(graph: Graph, options: Pick<CompileOptions, 'communicator' | 'pipeline'>): ProgramCollectives {
  const needs = (field: 'communicator' | 'pipeline') => graph.nodes.some((n) => COLLECTIVE_KINDS.includes(n.op) && (field === 'pipeline') === (n.op === 'send' || n.op === 'recv'));
  const take = (field: 'communicator' | 'pipeline'): DeviceCollectives | null => {
    if (!needs(field)) return null;
    const device = options[field]?.device;
    if (!device) {
      throw new BackendError(`the cuda backend runs communication nodes on the GPU, and the ${field} given has no device collectives`, {
        field: `${field}.device`, expected: 'DeviceCollectives (NCCL: run CUDA ranks through @zinfer/parallel worker ranks)', found: options[field] ? 'a host-only communicator' : 'none',
      });
    }
    return device;
  };
  return { tensor: take('communicator'), pipeline: take('pipeline'), rank: options.communicator?.rank };
}

/**
 * Values stored as f32 in the 16-bit modes: the graph's output when a linear writes it (the logits), and
 * when it is the all-gather of a linear's output (a vocab-parallel LM head), that linear's output as well,
 * so tensor-parallel logits keep f32 precision as the single-GPU ones do.
 */
export function f32OutputValues(graph: Graph): Set<ValueId> {
  const producer = new Map<ValueId, OpNode>(graph.nodes.map((n) => [n.output, n]));
  const out = producer.get(graph.output);
  if (out?.op === 'linear') return new Set([graph.output]);
  if (out?.op === 'allGather' && producer.get(out.inputs.x)?.op === 'linear') {
    const readers = graph.nodes.filter((n) => Object.values(n.inputs).includes(out.inputs.x));
    if (readers.length === 1) return new Set([graph.output, out.inputs.x]);
  }
  return new Set();
}

/**
 * The all-reduce an add of its result runs (exec-plan.ts: the add's launch runs it): the peer kernel adding
 * the residual too when the message fits its buffers (true: the add is done), else the all-reduce alone
 * (false: the caller launches the add).
 */
export function launchReduceOfAdd(ctx: StepContext, add: OpNode<'add'>, fused: ReduceAdd): boolean {
  const n = ctx.rowsOf(add.output) * ctx.width(add.output);
  const peer = ctx.collectives.peer;
  if (peer?.fits(n, ctx.act) && !ctx.isF32(fused.reduce.output) && !ctx.isF32(add.output)) {
    const x = peerPush(ctx, fused.reduce) ? 0n : ctx.value(fused.reduce.inputs.x); // 0n: its GEMV pushed x
    peer.launch(ctx.gpu, ctx.value(add.output), x, n, ctx.act, undefined, ctx.value(fused.residual));
    return true;
  }
  launchCollective(ctx, fused.reduce);
  return false;
}

export function launchCollective(ctx: StepContext, node: CommunicationNode): void {
  const rows = ctx.rowsOf(node.output);
  const out = ctx.value(node.output);
  const dtype: FloatDType = ctx.isF32(node.output) ? 'f32' : ctx.act;
  const bytes = dtypeBytes(dtype);
  const n = rows * ctx.width(node.output); // elements of the output value
  const range = (ptr: bigint, count: number) => ({ ptr, bytes: count * bytes });
  switch (node.op) {
    case 'moeDispatch':
    case 'moeCombine':
      return launchMoeExchange(ctx, node, group(ctx, 'tensor', node), dtype);
    case 'allReduce': {
      const c = group(ctx, 'tensor', node);
      const x = ctx.value(node.inputs.x);
      if (ctx.collectives.peer?.fits(n, dtype)) return ctx.collectives.peer.launch(ctx.gpu, out, peerPush(ctx, node) ? 0n : x, n, dtype);
      ctx.gpu.external(`allReduce of ${n} ${dtype}`, [range(x, n), range(out, n)], (stream) => c.allReduce(x, out, n, dtype, stream));
      return;
    }
    case 'allGather': {
      const c = group(ctx, 'tensor', node);
      const x = ctx.value(node.inputs.x);
      const part = rows * ctx.width(node.inputs.x);
      const ranks = node.attrs.ranks;
      // One row: [ranks, 1, width] is already [1, ranks·width].
      const landing = rows === 1 ? out : ctx.scratch(n * bytes);
      ctx.gpu.external(`allGather of ${part} ${dtype} a rank`, [range(x, part), range(landing, n)], (stream) => c.allGather(x, landing, part, dtype, stream));
      if (rows > 1) ctx.gpu.launch(`interleave_ranks_${dtype}`, flatGrid(n), 256, [out, landing, rows, ctx.width(node.inputs.x), ranks]);
      return;
    }
    case 'send': {
      const c = group(ctx, 'pipeline', node);
      const x = ctx.value(node.inputs.x);
      ctx.gpu.external(`send of ${n} ${dtype} to stage ${node.attrs.peer}`, [range(x, n)], (stream) => c.send(x, n, dtype, node.attrs.peer, stream));
      ctx.gpu.launch(`copy_${dtype}`, flatGrid(n), 256, [out, x, n]);
      return;
    }
    case 'recv': {
      const c = group(ctx, 'pipeline', node);
      ctx.gpu.external(`recv of ${n} ${dtype} from stage ${node.attrs.peer}`, [range(out, n)], (stream) => c.recv(out, n, dtype, node.attrs.peer, stream));
      return;
    }
  }
}

function group(ctx: StepContext, which: 'tensor' | 'pipeline', node: CommunicationNode): DeviceCollectives {
  const c = ctx.collectives[which];
  if (!c) throw new BackendError(`${node.op} node without ${which === 'tensor' ? 'a communicator' : 'a pipeline'} (compile checks this)`);
  return c;
}
