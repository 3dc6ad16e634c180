// The dense path of moeExperts for batch steps of 9–64 rows (cuda/moe-dense.cu): each local expert over
// every row of the step, as two strided-batched cuBLAS GEMMs on the tensor cores (gate|up of all experts,
// then down), with the activation and the weighted combine (moe_combine, dense) as two small kernels. It
// needs the experts' weights side by side in the activation dtype (device-weights.ts uploads them so:
// g0 u0 g1 u1 …, and d0 d1 …); otherwise, or should cuBLASLt refuse a batch, the step takes the tile path
// (moe-launch.ts). Larger steps may run it too, in passes (moe-prefill.ts picks the path): each pass reads
// every local expert once, where the tile path reads an expert once per tile of 8 of its rows.
// On a Mixtral-shape rank at 64 rows the tile path's GEMV-like kernels took ~1.1 ms a layer on an H200
// against ~0.16 ms to read the experts' weights: CUDA-core arithmetic, not bandwidth, bounded them.
import { BackendError, type OpNode } from '@zinfer/core';
import { ACTIVATION_CODES } from './activation-codes.js';
import type { DeviceWeight } from './device-weights.js';
import { align256, dtypeBytes, flatGrid, type StepContext } from './step-context.js';

/** Rows up to which a batch step's experts always run dense, and the unit of a dense pass's rows. */
export const MOE_DENSE_MAX_ROWS = 64;

/** Scratch a dense pass may take (default 256 MiB): its rows are as many as fit, in multiples of 64. */
let densePassBytes = 256 * 2 ** 20;
export function setMoeDensePassBytes(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new BackendError(`the dense pass's scratch is ${bytes} bytes; it takes a positive integer`, { field: 'densePassBytes' });
  densePassBytes = bytes;
}

/** Rows of one dense pass over a step of `rows` rows: at least 64; more while the pass's scratch fits densePassBytes. */
export function densePassRows(d: DenseExperts, rows: number, actBytes: number): number {
  const perRow = denseLayout(d, 1, actBytes).total; // ≥ a row's share of any larger pass (each part rounds up to 256)
  const fit = Math.floor(densePassBytes / perRow / MOE_DENSE_MAX_ROWS) * MOE_DENSE_MAX_ROWS;
  return Math.min(rows, Math.max(MOE_DENSE_MAX_ROWS, fit));
}

/** The node's experts as two strided batches: gate|up interleaved from `gateUp`, downs from `down`. */
export interface DenseExperts {
  count: number;
  gateUp: bigint;
  down: bigint;
  hidden: number;
  inter: number;
}

/** Whether `ws` lie one after another, each `ws[0].bytes` long (one allocation, side by side). */
const sideBySide = (ws: DeviceWeight[]) => ws.every((w, i) => w.ptr === ws[0].ptr + BigInt(i * ws[0].bytes) && w.bytes === ws[0].bytes);

/** The dense layout of the node's experts, or null (not side by side, another dtype, or refused before). */
export function denseExperts(ctx: StepContext, node: OpNode<'moeExperts'>): DenseExperts | null {
  const { experts } = node.attrs;
  if (experts.length === 0) return null;
  const gateUp = experts.flatMap((e) => [ctx.weight(e.gate), ctx.weight(e.up)]);
  const down = experts.map((e) => ctx.weight(e.down));
  if (![...gateUp, ...down].every((w) => w.dtype === ctx.act && w.shape.length === 2)) return null;
  if (!sideBySide(gateUp) || !sideBySide(down) || ctx.moe!.denseRefused.has(node)) return null;
  const [inter, hidden] = gateUp[0].shape;
  if (down[0].shape[0] !== hidden || down[0].shape[1] !== inter) return null;
  return { count: experts.length, gateUp: gateUp[0].ptr, down: down[0].ptr, hidden, inter };
}

/** Byte offsets in the scratch: gate|up [2E, rows, inter] f32, h [E, rows, inter] (activation dtype), y [E, rows, hidden] f32. */
export function denseLayout(d: DenseExperts, rows: number, actBytes: number): { gu: number; h: number; y: number; total: number } {
  const gu = 0;
  const h = gu + align256(2 * d.count * rows * d.inter * 4);
  const y = h + align256(d.count * rows * d.inter * actBytes);
  return { gu, h, y, total: y + align256(d.count * rows * d.hidden * 4) };
}

/**
 * Enqueues the dense path over `rows` rows, in passes of densePassRows (each pass's x, output and routing rows
 * offset; one scratch of a pass's size serves them all, in stream order); false when cuBLASLt refuses a
 * batch, and then the caller's tile path rewrites every output row.
 */
export function launchMoeDense(ctx: StepContext, node: OpNode<'moeExperts'>, d: DenseExperts, rows: number): boolean {
  if (!ctx.gpu.gemm) return false;
  const rowBytes = d.hidden * dtypeBytes(ctx.act);
  const routingRowBytes = 2 * node.attrs.topK * 4; // [rows, 2·topK] f32 (moe-launch.ts)
  const [x, out, routing] = [ctx.value(node.inputs.x), ctx.value(node.output), ctx.value(node.inputs.routing)];
  const passRows = densePassRows(d, rows, dtypeBytes(ctx.act));
  const base = ctx.scratch(denseLayout(d, passRows, dtypeBytes(ctx.act)).total);
  for (let r0 = 0; r0 < rows; r0 += passRows) {
    const pass = { x: x + BigInt(r0 * rowBytes), out: out + BigInt(r0 * rowBytes), routing: routing + BigInt(r0 * routingRowBytes) };
    if (!densePass(ctx, node, d, Math.min(passRows, rows - r0), base, pass)) return false;
  }
  return true;
}

/**
 * A GEMM path's answer to an error: cuBLASLt refusing one of its GEMMs marks the node (the tile path from then on,
 * which rewrites every output row: what the GEMMs before the refusal wrote is only scratch) and gives false; any
 * other error is thrown on.
 */
export function cublasRefused(ctx: StepContext, node: OpNode<'moeExperts'>, e: unknown): false {
  if (!(e instanceof BackendError) || !e.message.includes('cuBLASLt')) throw e;
  ctx.moe!.denseRefused.add(node);
  return false;
}

/** One pass of the dense path: `rows` rows of x into out, read with their routing. */
function densePass(ctx: StepContext, node: OpNode<'moeExperts'>, d: DenseExperts, rows: number, base: bigint, io: { x: bigint; out: bigint; routing: bigint }): boolean {
  const { gpu } = ctx;
  const at = denseLayout(d, rows, dtypeBytes(ctx.act));
  const [gu, h, y] = [at.gu, at.h, at.y].map((o) => base + BigInt(o));
  const { hidden, inter, count } = d;
  const { topK } = node.attrs;
  const { ptr: table, nLocal, mapLen } = ctx.moe!.table(ctx, node);
  try {
    gpu.gemm!({ y: gu, x: io.x, w: d.gateUp, dtype: ctx.act, yDtype: 'f32', rows, inF: hidden, outF: inter, batch: { count: 2 * count, strideW: inter * hidden, strideY: rows * inter } });
    gpu.launch(`moe_dense_act_${ctx.act}`, flatGrid(count * rows * inter), 256, [h, gu, count, rows, inter, ACTIVATION_CODES[node.attrs.fn]]);
    gpu.gemm!({ y, x: h, w: d.down, dtype: ctx.act, yDtype: 'f32', rows, inF: inter, outF: hidden, batch: { count, strideW: hidden * inter, strideY: rows * hidden, strideX: rows * inter } });
  } catch (e) {
    return cublasRefused(ctx, node, e);
  }
  gpu.launch(`moe_combine_${ctx.act}`, flatGrid(rows * hidden), 256, [io.out, y, io.routing, table, nLocal, mapLen, rows, topK, hidden, 1, 0n]);
  return true;
}
