// Whether latency-bound launches ask L2 for the weights of the GEMV that follows them (cp.async.bulk
// prefetch, sm_90; `l2_prefetch` in cuda/common.cuh): the decode attention for the output projection, a
// GEMV's last wave for the next GEMV's first rows. DRAM then works during kernels that barely use it, and
// the next GEMV starts on L2 hits. On by default; ZINFER_L2_PREFETCH=off, or setL2Prefetch(false) between
// steps (a program with CUDA graphs must drop them to see a change: resetGraphs), so the bench times both.
import { BackendError } from '@zinfer/core';
import type { StepContext } from './step-context.js';

/** A prefetch asks for at most this share of L2, so what it fetches is still there when it is read. */
export const L2_PREFETCH_SHARE = 0.6;
/** Decode steps of at most this many rows prefetch (more rows: the attention streams K/V through L2). */
export const L2_PREFETCH_MAX_ROWS = 8;

export function parseL2Prefetch(value: string | undefined, field = 'ZINFER_L2_PREFETCH'): boolean {
  if (value === undefined || value === '' || value === 'on' || value === '1') return true;
  if (value === 'off' || value === '0') return false;
  throw new BackendError(`${field} is '${value}'; it takes on or off`, { field, expected: 'on | off', found: value });
}

let current = parseL2Prefetch(process.env.ZINFER_L2_PREFETCH);

export function l2Prefetch(): boolean {
  return current;
}

export function setL2Prefetch(on: boolean): void {
  current = on;
}

/** Bytes of `bytes` worth prefetching for a step of `rows` rows on a GPU with `l2Bytes` of L2 (0: none). */
export function prefetchBytes(bytes: number, rows: number, l2Bytes: number): number {
  if (!current || rows > L2_PREFETCH_MAX_ROWS || l2Bytes <= 0) return 0;
  return Math.min(bytes, Math.floor(L2_PREFETCH_SHARE * l2Bytes));
}

/** Device address and bytes of the weight to prefetch into L2 during a launch of `rows` rows ([0n, 0]: none). */
export function prefetchOf(ctx: StepContext, name: string | undefined, rows: number): [bigint, number] {
  const w = name === undefined ? null : ctx.maybeWeight(name);
  if (!w) return [0n, 0];
  const bytes = prefetchBytes(w.bytes, rows, ctx.gpu.l2Bytes);
  return bytes > 0 ? [w.ptr, bytes] : [0n, 0];
}
