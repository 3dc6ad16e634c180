// Whether launches ask L2 for the weights of the GEMV that follows them (cp.async.bulk prefetch, sm_90;
// `l2_prefetch` in cuda/common.cuh): 'attention', the decode attention for the output projection;
// 'all', also a GEMV's last wave for the next GEMV's first rows. Off by default: on an H100 (run of
// 2026-11-28, both at once) the graphed batch-1 decode took 6.343 ms with it against 5.397 without on the
// 7B shape, 0.692 against 0.527 on GPT-2. ZINFER_L2_PREFETCH=off|attention|all, or setL2Prefetch between
// steps (a program with CUDA graphs must drop them to see a change: resetGraphs), so the bench times each.
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
