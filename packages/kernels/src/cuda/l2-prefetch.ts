// Whether launches ask L2 for the weights of the GEMV that follows them (cp.async.bulk prefetch, sm_90;
// `l2_prefetch` in cuda/common.cuh): 'attention', the decode attention for the output projection;
// 'all', also a GEMV's last wave for the next GEMV's first rows. Off by default: on an H100 (run of
// 2026-11-28, both at once) the graphed batch-1 decode took 6.343 ms with it against 5.397 without on the
// 7B shape, 0.692 against 0.527 on GPT-2. ZINFER_L2_PREFETCH=off|attention|all, or setL2Prefetch between
// steps (a program with CUDA graphs must drop them to see a change: resetGraphs), so the bench times each.
//
// Before an all-reduce (ZINFER_REDUCE_PREFETCH=off|batch|all, setReducePrefetch): a launch of its own,
// `l2_prefetch_range`, asks L2 for the weights of the linear group that runs next (the whole group when its
// weights lie side by side, up to L2_PREFETCH_SHARE of L2). While the ranks meet, DRAM is idle: a
// tensor-parallel 13B rank at 64 rows spends ~20 µs an all-reduce (81 a step), time enough to read 80 MB.
// 'batch': steps of more than L2_PREFETCH_MAX_ROWS rows only (the cuBLAS path); 'all': every step.
import type { OpNode } from '@zinfer/core';
import { EnvChoice } from './env-choice.js';
import type { StepContext } from './step-context.js';

export const L2_PREFETCH_MODES = ['off', 'attention', 'all'] as const;
export type L2PrefetchMode = (typeof L2_PREFETCH_MODES)[number];
/** Which launches prefetch. */
export type PrefetchSite = 'attention' | 'gemv';

/** A prefetch asks for at most this share of L2, so what it fetches is still there when it is read. */
export const L2_PREFETCH_SHARE = 0.6;
/** Decode steps of at most this many rows prefetch (more rows: the attention streams K/V through L2). */
export const L2_PREFETCH_MAX_ROWS = 8;

const mode = new EnvChoice(L2_PREFETCH_MODES, 'off', 'ZINFER_L2_PREFETCH');
export const parseL2Prefetch = (value: string | undefined, field?: string): L2PrefetchMode => mode.parse(value, field);
export const l2Prefetch = (): L2PrefetchMode => mode.get();
export const setL2Prefetch = (m: L2PrefetchMode): void => mode.set(m);

/** Whether launches at `site` prefetch in a step of `rows` rows under the current mode. */
function prefetches(site: PrefetchSite, rows: number): boolean {
  const m = mode.get();
  return (m === 'all' || (m === 'attention' && site === 'attention')) && rows <= L2_PREFETCH_MAX_ROWS;
}

/** Device address and bytes of the weight to prefetch at `site` in a launch of `rows` rows ([0n, 0]: none). */
export function prefetchOf(ctx: StepContext, site: PrefetchSite, name: string | undefined, rows: number): [bigint, number] {
  if (!prefetches(site, rows) || name === undefined || ctx.gpu.l2Bytes <= 0) return [0n, 0];
  const w = ctx.maybeWeight(name);
  return w ? [w.ptr, Math.min(w.bytes, Math.floor(L2_PREFETCH_SHARE * ctx.gpu.l2Bytes))] : [0n, 0];
}

export const REDUCE_PREFETCH_MODES = ['off', 'batch', 'all'] as const;
export type ReducePrefetchMode = (typeof REDUCE_PREFETCH_MODES)[number];
const reduceMode = new EnvChoice(REDUCE_PREFETCH_MODES, 'off', 'ZINFER_REDUCE_PREFETCH');
export const reducePrefetch = (): ReducePrefetchMode => reduceMode.get();
export const setReducePrefetch = (m: ReducePrefetchMode): void => reduceMode.set(m);
/** Blocks of a prefetch launch: each thread asks for 16 KiB pieces (l2_prefetch), so a few blocks suffice. */
export const REDUCE_PREFETCH_BLOCKS = 8;

/**
 * Device address and bytes to prefetch before the all-reduce `node` in a step of `rows` rows ([0n, 0]:
 * none): from the first weight of the next linear group on, over the group's members while they lie side
 * by side on the device, capped at L2_PREFETCH_SHARE of L2. Streamed weights are left alone.
 */
export function reducePrefetchOf(ctx: StepContext, node: OpNode, rows: number): [bigint, number] {
  const m = reduceMode.get();
  if (m === 'off' || (m === 'batch' && rows <= L2_PREFETCH_MAX_ROWS) || ctx.gpu.l2Bytes <= 0) return [0n, 0];
  const name = ctx.plan.nextWeight.get(node);
  const first = name === undefined ? null : ctx.maybeWeight(name);
  if (!first) return [0n, 0];
  let bytes = first.bytes;
  const group = ctx.plan.groups.find((g) => g.members[0].attrs.weight === name);
  for (const member of group?.members.slice(1) ?? []) {
    const w = ctx.maybeWeight(member.attrs.weight);
    if (!w || w.ptr !== first.ptr + BigInt(bytes)) break;
    bytes += w.bytes;
  }
  return [first.ptr, Math.min(bytes, Math.floor(L2_PREFETCH_SHARE * ctx.gpu.l2Bytes))];
}

/** Enqueues the prefetch before the all-reduce `node`, if reducePrefetchOf asks for one. */
export function launchReducePrefetch(ctx: StepContext, node: OpNode, rows: number): void {
  const [ptr, bytes] = reducePrefetchOf(ctx, node, rows);
  if (bytes > 0) ctx.gpu.launch('l2_prefetch_range', { x: REDUCE_PREFETCH_BLOCKS }, 128, [ptr, bytes]);
}
