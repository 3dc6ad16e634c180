// Linear layers. Up to 8 rows (decode): one fused GEMV launch per linear group (exec-plan.ts): 16-byte
// weight loads, the norm before and the residual / activation / gated activation after folded in. More rows:
// cuBLAS (f32 × f32 in parity mode; f16/bf16 tensor cores in the 16-bit modes) plus a bias kernel, or the
// tiled kernel for f16/bf16 weights with f32 activations (cuBLAS multiplies like types only); a linear
// followed by a residual add is one cuBLAS GEMM that adds the residual.
import { BackendError, type OpNode, type ValueId } from '@zinfer/core';
import { ACTIVATION_CODES } from './activation-codes.js';
import { prefetchOf } from './l2-prefetch.js';
import type { LinearGroup } from './exec-plan.js';
import { GEMV_WROWS, gemvBlockRows, gemvBlocks, gemvLaunch } from './gemv-variant.js';
import type { PeerAllReduce } from './peer-allreduce.js';
import type { StepContext } from './step-context.js';
import type { KernelArg } from './gpu.js';

/** Rows up to which linear layers run as GEMVs. */
export const GEMV_MAX_ROWS = 8;
export { GEMV_WROWS } from './gemv-variant.js';
/** Threads of a GEMV block (one-warp entries: 32). */
export const GEMV_THREADS = 128;
const TILE = 64;
/**
 * Blocks of a GEMV an SM holds (v1 at 1 row: 144 registers a thread, 3 blocks of 128; about 4× as many
 * one-warp blocks): its last wave, the blocks that prefetch the next GEMV's weights. A wave's worth of the
 * next weights is what they ask for.
 */
const GEMV_BLOCKS_PER_SM = 3;
/** EPI_* and NORM_* of cuda/gemv.cu (push: the output goes to the peer all-reduce's Lamport slots). */
export const EPI = { none: 0, residual: 1, gated: 2, act: 3, push: 4 } as const;
export const NORM = { none: 0, rms: 1, layer: 2 } as const;
/** The last GEMV arguments (llTable .. llSlotBytes) of a launch that pushes nowhere. */
const GEMV_NO_PUSH: readonly [bigint, number, number, number, number] = [0n, 0, 0, 0, 0];

/** One segment of a GEMV launch: output, weight, bias (0n: none), output features (0: unused). */
export type GemvSegment = [bigint, bigint, bigint, number];

/** What a GEMV launch takes, by name (gemvArgs puts it in gemv.cu's order). */
export interface GemvParams {
  /** Up to 3 segments (missing ones are unused). */
  segs: GemvSegment[];
  x: bigint;
  res?: bigint;
  normW?: bigint;
  normB?: bigint;
  eps?: number;
  rows: number;
  inF: number;
  epi: number;
  act?: number;
  norm?: number;
  yF32?: number;
  /** The next GEMV's weights the last blocks ask L2 for: pointer, bytes, blocks (default none). */
  prefetch?: readonly [bigint, number, number];
  push?: readonly [bigint, number, number, number, number];
}

/** A GEMV launch's arguments in the order of gemv.cu's GEMV_ENTRY: every caller builds them here. */
export function gemvArgs(p: GemvParams): KernelArg[] {
  const seg = (i: number): GemvSegment => p.segs[i] ?? [0n, 0n, 0n, 0];
  return [
    ...seg(0), ...seg(1), ...seg(2), p.x, p.res ?? 0n, p.normW ?? 0n, p.normB ?? 0n, p.eps ?? 0, p.rows, p.inF, p.epi, p.act ?? 0, p.norm ?? NORM.none,
    p.yF32 ?? 0, ...(p.prefetch ?? [0n, 0, 0]), ...(p.push ?? GEMV_NO_PUSH),
  ];
}

/** The GEMV entry point compiled for at least `rows` rows (1, 2, 4 or 8). */
export function gemvRows(rows: number): number {
  if (!(rows >= 1 && rows <= GEMV_MAX_ROWS)) throw new BackendError(`GEMV takes 1 to ${GEMV_MAX_ROWS} rows, not ${rows}`);
  return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
}

/**
 * Whether a group runs as one launch this step: its fused GEMV (at most GEMV_MAX_ROWS rows), or over more
 * rows a linear and its residual add as one cuBLAS GEMM that adds the residual (cuBLASLt's C matrix).
 */
export function groupFuses(ctx: StepContext, g: LinearGroup): boolean {
  return ctx.rowsOf(g.input) <= GEMV_MAX_ROWS || residualGemm(ctx, g);
}

/** A lone linear (no norm, no bias) whose residual add cuBLAS can take: its weights in the activation dtype, no f32 value. */
function residualGemm(ctx: StepContext, g: LinearGroup): boolean {
  const e = g.epilogue;
  if (e.kind !== 'residual' || g.norm !== null || g.members.length !== 1 || g.members[0].attrs.bias !== null) return false;
  const w = ctx.weight(g.members[0].attrs.weight);
  return w.dtype === ctx.act && ctx.options.cublas && ctx.gpu.gemm !== null && !ctx.isF32(g.outputs[0]) && !ctx.isF32(e.residual);
}

/** The fused launch of a group: its GEMV, or (more rows) its GEMM with the residual added. */
export function launchGroup(ctx: StepContext, g: LinearGroup): void {
  const rows = ctx.rowsOf(g.input);
  if (rows === 0) return;
  if (rows > GEMV_MAX_ROWS) return launchResidualGemm(ctx, g, rows);
  const ws = g.members.map((m) => ctx.weight(m.attrs.weight));
  const [, inF] = ws[0].shape;
  const bias = (m: OpNode<'linear'>) => (m.attrs.bias === null ? 0n : ctx.weight(m.attrs.bias).ptr);
  const seg = (i: number): GemvSegment => {
    if (i >= g.members.length || (g.epilogue.kind !== 'none' && g.epilogue.kind !== 'gated' && i > 0)) return [0n, 0n, 0n, 0];
    const y = g.epilogue.kind === 'none' ? ctx.value(g.outputs[i]) : i === 0 ? ctx.value(g.outputs[0]) : 0n;
    return [y, ws[i].ptr, bias(g.members[i]), ws[i].shape[0]];
  };
  const segs = [seg(0), seg(1), seg(2)];
  const e = g.epilogue;
  const reduce = ctx.plan.pushOf.get(g);
  const push = reduce ? peerPush(ctx, reduce) : null;
  const epi = push ? EPI.push : EPI[e.kind];
  const act = e.kind === 'act' || e.kind === 'gated' ? ACTIVATION_CODES[e.node.attrs.fn] : 0;
  const res = e.kind === 'residual' ? ctx.value(e.residual) : 0n;
  const norm = g.norm === null ? NORM.none : g.norm.op === 'rmsNorm' ? NORM.rms : NORM.layer;
  const normW = g.norm ? ctx.weight(g.norm.attrs.weight).ptr : 0n;
  const normB = g.norm?.op === 'layerNorm' ? ctx.weight(g.norm.attrs.bias).ptr : 0n;
  const eps = g.norm ? g.norm.attrs.eps : 0;
  const x = ctx.value(g.norm ? g.norm.inputs.x : g.input);
  const outs = segs.filter((s) => s[3] > 0).map((s) => s[3]);
  const yF32 = g.outputs.some((v) => ctx.isF32(v)) ? 1 : 0;
  const grid = { blocks: gemvBlocks(outs, e.kind === 'gated', GEMV_WROWS), multiprocessors: ctx.gpu.multiprocessors };
  const { kernel, threads } = gemvLaunch(rows, ws[0].dtype, ctx.act, inF, e.kind, grid, norm === NORM.layer);
  const blockRows = gemvBlockRows(kernel);
  const blocks = gemvBlocks(outs, e.kind === 'gated', blockRows);
  const prefetch = tailPrefetch(ctx, g, rows, blocks, threads, inF * blockRows * (ws[0].bytes / (ws[0].shape[0] * inF)));
  ctx.gpu.launch(kernel, { x: blocks }, threads, gemvArgs({ segs, x, res, normW, normB, eps, rows, inF, epi, act, norm, yF32, prefetch, push: push?.pushArgs() }));
}

/**
 * The peer all-reduce that `reduce`'s input GEMV pushes into this step (gemv.cu EPI_PUSH), or null. It does
 * when the plan allows it (exec-plan.ts: a lone linear that only this all-reduce reads), the step runs the
 * GEMV (at most GEMV_MAX_ROWS rows), the message takes the Lamport kernel in the activation dtype, and rows
 * are whole groups of 4 (one aligned store a block and row). launchCollective asks the same question and
 * then launches the all-reduce without x.
 */
export function peerPush(ctx: StepContext, reduce: OpNode): PeerAllReduce | null {
  const peer = ctx.collectives.peer;
  if (!peer?.settings.push || reduce.op !== 'allReduce' || !ctx.plan.pushes.has(reduce)) return null;
  const rows = ctx.rowsOf(reduce.output), width = ctx.width(reduce.output);
  if (rows < 1 || rows > GEMV_MAX_ROWS || width % GEMV_WROWS !== 0 || ctx.isF32(reduce.output) || ctx.isF32(reduce.inputs.x)) return null;
  const n = rows * width;
  return peer.fits(n, ctx.act) && peer.kernelFor(n, ctx.act) === 'll' ? peer : null;
}

/** A residual group over GEMV_MAX_ROWS rows (residualGemm): one GEMM whose C matrix is the residual. */
function launchResidualGemm(ctx: StepContext, g: LinearGroup, rows: number): void {
  const e = g.epilogue;
  if (e.kind !== 'residual') throw new BackendError(`a ${e.kind} group of ${rows} rows has no fused GEMM`);
  const w = ctx.weight(g.members[0].attrs.weight);
  ctx.gpu.gemm!({ y: ctx.value(g.outputs[0]), x: ctx.value(g.input), w: w.ptr, c: ctx.value(e.residual), dtype: ctx.act, yDtype: ctx.act, rows, inF: w.shape[1], outF: w.shape[0] });
}

/** The prefetch arguments of a group's GEMV: the next group's first weights, a wave's worth, by the last wave. */
function tailPrefetch(ctx: StepContext, g: LinearGroup, rows: number, blocks: number, threads: number, blockBytes: number): [bigint, number, number] {
  const tail = Math.min(blocks, Math.round((GEMV_BLOCKS_PER_SM * GEMV_THREADS) / threads) * ctx.gpu.multiprocessors);
  const [pf, bytes] = prefetchOf(ctx, 'gemv', ctx.plan.nextWeight.get(g), rows);
  const capped = Math.min(bytes, Math.floor(tail * blockBytes));
  return capped > 0 ? [pf, capped, tail] : [0n, 0, 0];
}

/**
 * One linear node on its own, for steps of more than GEMV_MAX_ROWS rows: cuBLAS or the tiled GEMM. (Every
 * linear belongs to a group, and a group of at most GEMV_MAX_ROWS rows runs as its fused GEMV.)
 */
export function launchLinear(ctx: StepContext, node: OpNode<'linear'>): void {
  const w = ctx.weight(node.attrs.weight);
  const [outF, inF] = w.shape;
  const rows = ctx.rowsOf(node.inputs.x);
  const y = ctx.value(node.output);
  const x = ctx.value(node.inputs.x);
  const bias = node.attrs.bias === null ? 0n : ctx.weight(node.attrs.bias).ptr;
  const yF32 = ctx.isF32(node.output) ? 1 : 0;
  const { gpu, act } = ctx;
  if (w.dtype === act && ctx.options.cublas && gpu.gemm) {
    gpu.gemm({ y, x, w: w.ptr, dtype: act, yDtype: yF32 ? 'f32' : act, rows, inF, outF });
    if (bias !== 0n) gpu.launch(`bias_add_${act}`, { x: Math.min(4096, Math.ceil((rows * outF) / 256)) }, 256, [y, bias, rows * outF, outF, yF32]);
  } else {
    gpu.launch(`gemm_${w.dtype}_${act}`, { x: Math.ceil(outF / TILE), y: Math.ceil(rows / TILE) }, 256, [y, w.ptr, x, bias, rows, inF, outF, yF32]);
  }
}

/** Values a group's fused launch reads (for tests and diagnostics). */
export function groupInputs(g: LinearGroup): ValueId[] {
  const v = [g.norm ? g.norm.inputs.x : g.input];
  if (g.epilogue.kind === 'residual') v.push(g.epilogue.residual);
  return v;
}
