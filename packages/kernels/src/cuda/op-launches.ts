// Launches for every op except linear and attention (their own files): one kernel a node, named by the
// op and the activation dtype (`rms_norm_bf16`), weight-reading kernels also by the weight dtype.
import { BackendError, type OpNode } from '@zinfer/core';
import { ACTIVATION_CODES } from './activation-codes.js';
import { launchAttention, type KvPointers } from './attention-launch.js';
import { launchCollective, launchReduceOfAdd } from './collective-launch.js';
import { launchLinear } from './linear-launch.js';
import { launchMoeExperts, launchMoeRouter, launchSigmoidGate } from './moe-launch.js';
import { normThreads, threadsFor, vectorGrid, type StepContext } from './step-context.js';

export { ACTIVATION_CODES } from './activation-codes.js';

export function launchNode(ctx: StepContext, node: OpNode, kv: KvPointers | null): void {
  const { gpu, act } = ctx;
  const rows = ctx.rowsOf(node.output);
  if (rows === 0) return; // nothing selected this step: the value is empty
  const out = ctx.value(node.output);
  switch (node.op) {
    case 'embedding': {
      const t = ctx.weight(node.attrs.table);
      const dim = t.shape[1];
      const shardStart = node.attrs.vocabShardStart ?? 0; // a vocab-parallel shard: rows outside it are zeros
      gpu.launch(`embedding_${t.dtype}_${act}`, { x: rows }, threadsFor(dim), [out, t.ptr, ctx.value(node.inputs.ids), dim, node.attrs.offset, node.attrs.scale, shardStart, t.shape[0]]);
      return;
    }
    case 'linear':
      return launchLinear(ctx, node);
    case 'rmsNorm': {
      const { dim, eps } = node.attrs;
      const groups = (rows * ctx.width(node.output)) / dim;
      gpu.launch(`rms_norm_${act}`, { x: groups }, normThreads(dim, act), [out, ctx.value(node.inputs.x), ctx.weight(node.attrs.weight).ptr, dim, eps]);
      return;
    }
    case 'layerNorm': {
      const { dim, eps } = node.attrs;
      const groups = (rows * ctx.width(node.output)) / dim;
      gpu.launch(`layer_norm_${act}`, { x: groups }, normThreads(dim, act), [out, ctx.value(node.inputs.x), ctx.weight(node.attrs.weight).ptr, ctx.weight(node.attrs.bias).ptr, dim, eps]);
      return;
    }
    case 'add': {
      const sum = ctx.plan.embeddingSums.get(node);
      if (sum) return launchEmbeddingSum(ctx, out, rows, sum.a, sum.b);
      const reduce = ctx.plan.reduceAdds.get(node);
      if (reduce && launchReduceOfAdd(ctx, node, reduce)) return; // else its all-reduce ran: the add follows
      const n = rows * ctx.width(node.output);
      gpu.launch(`add_${act}`, vectorGrid(n, act), 256, [out, ctx.value(node.inputs.a), ctx.value(node.inputs.b), n]);
      return;
    }
    case 'activation': {
      const n = rows * ctx.width(node.output);
      gpu.launch(`activation_${act}`, vectorGrid(n, act), 256, [out, ctx.value(node.inputs.x), 0n, n, ACTIVATION_CODES[node.attrs.fn]]);
      return;
    }
    case 'gatedActivation': {
      const n = rows * ctx.width(node.output);
      gpu.launch(`activation_${act}`, vectorGrid(n, act), 256, [out, ctx.value(node.inputs.gate), ctx.value(node.inputs.up), n, ACTIVATION_CODES[node.attrs.fn]]);
      return;
    }
    case 'rotary': {
      const { heads, headDim, rotaryDim, interleaved, attentionScaling } = node.attrs;
      gpu.launch(`rotary_${act}`, { x: rows }, threadsFor(heads * headDim), [
        out, ctx.value(node.inputs.x), ctx.value(node.inputs.positions), ctx.invFreq(node), heads, headDim, rotaryDim, interleaved ? 1 : 0, attentionScaling,
      ]);
      return;
    }
    case 'attention':
      if (!kv) throw new BackendError('attention node in a program compiled without a KV cache');
      return launchAttention(ctx, node, kv, ctx.plan.rope.get(node) ?? null);
    case 'gatherRows': {
      const width = ctx.width(node.output);
      gpu.launch(`gather_rows_${act}`, { x: rows }, threadsFor(width), [out, ctx.value(node.inputs.x), ctx.metaPtr(ctx.meta.at.selected), width]);
      return;
    }
    case 'moeRouter':
      return launchMoeRouter(ctx, node);
    case 'moeExperts':
      return launchMoeExperts(ctx, node);
    case 'sigmoidGate':
      return launchSigmoidGate(ctx, node);
    case 'allReduce':
    case 'allGather':
    case 'send':
    case 'recv':
    case 'moeDispatch':
    case 'moeCombine':
      return launchCollective(ctx, node);
    default:
      throw new BackendError(`cuda backend has no op ${(node as OpNode).op}`);
  }
}

/** out = lookup a + lookup b in one launch (exec-plan.ts: an add of two embeddings nothing else reads). */
function launchEmbeddingSum(ctx: StepContext, out: bigint, rows: number, a: OpNode<'embedding'>, b: OpNode<'embedding'>): void {
  const [ta, tb] = [ctx.weight(a.attrs.table), ctx.weight(b.attrs.table)];
  const dim = ta.shape[1];
  ctx.gpu.launch(`embedding_sum_${ta.dtype}_${ctx.act}`, { x: rows }, threadsFor(dim), [
    out, ta.ptr, ctx.value(a.inputs.ids), a.attrs.offset, a.attrs.scale, tb.ptr, ctx.value(b.inputs.ids), b.attrs.offset, b.attrs.scale, dim,
  ]);
}
