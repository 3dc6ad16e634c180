// Launches of the Mixture-of-Experts ops (cuda/moe.cu). moeRouter: one block a row, or a block per row and
// expert for decode steps (routerSplits), writing the routing
// in f32 whatever the activation dtype (ids must stay exact, weights unrounded) and counting tokens per
// expert. moeExperts: up to 8 rows, two GEMV-like launches that find the routed experts on the device and
// read each one's weights once (gate/up fused with the activation, then down fused with the weighted
// combine), on FMAs at 1 row and on the tensor cores at 2–8 where they fit (moeExpertsMma); 9–64 rows,
// every expert over every row as batched cuBLAS GEMMs (moe-dense.ts); more rows, a grouping launch (slots per
// expert, tiles of ≤ 8) and then gate/up, down and the combine over the tiles, or the dense path in passes, or
// the grouped path (moe-prefill.ts picks).
// Launch shapes depend only on the row count, never on the routing, so decode steps capture as CUDA graphs
// (the grouped path reads the routing on the host, and never runs in a captured step).
// sigmoidGate: one elementwise kernel.
import { BackendError, type Graph, type OpNode, type ValueId } from '@zinfer/core';
import { ACTIVATION_CODES } from './activation-codes.js';
import { routerSharedBytes } from './exec-plan.js';
import { gemvVariant } from './gemv-variant.js';
import { gemvRows } from './linear-launch.js';
import { denseExperts, launchMoeDense } from './moe-dense.js';
import { launchMoeGrouped } from './moe-grouped-gemm.js';
import { moeStepPath } from './moe-prefill.js';
import type { MoeTables } from './moe-tables.js';
import { EnvChoice } from './env-choice.js';
import { align256, dtypeBytes, flatGrid, type StepContext } from './step-context.js';

/** MOE_* of cuda/moe.cu. */
export const MOE_THREADS = 128;
export const MOE_WROWS = 4;
export const MOE_TILE = 8;
export const MOE_MAX_TOPK = 16;
/** Rows up to which moeExperts takes the GEMV path (tiles found inside each block). */
export const MOE_SMALL_ROWS = 8;
/** Features a block of the tensor-core entries computes: gate/up 8 (with their 8 up rows: the MMA's 16), down 16. */
export const MOE_MMA_GATE_UP_FEATURES = 8;
export const MOE_MMA_DOWN_FEATURES = 16;

/**
 * Whether a small step of `rows` rows runs its experts on the tensor cores (moe_gate_up_m_*, moe_down_m_*): 2–8
 * rows in the 16-bit modes with the experts' weights in the activation dtype and rows of whole 16-byte vectors,
 * when the GEMV variant is mma or auto (so the bench's A/B of the variants covers the experts as well). At 1 row
 * the FMA entries stay, as the GEMV's do.
 */
export function moeExpertsMma(rows: number, weight: string, act: string, hidden: number, inter: number): boolean {
  const v = gemvVariant();
  return rows >= 2 && rows <= MOE_SMALL_ROWS && act !== 'f32' && weight === act && hidden % 8 === 0 && inter % 8 === 0 && (v === 'mma' || v === 'auto');
}
/** Router logits live in shared memory: 4 bytes an expert. */
export const MOE_MAX_EXPERTS = 4096;
const ROUTER_THREADS = 256;
const MAX_GRID_Y = 65535;

/** ROUTER_SPLIT_VECS of cuda/moe-router.cu: the 16-byte vectors of a row a thread of the split router holds. */
const ROUTER_SPLIT_VECS = 4;
/** Rows up to which the router may run split (decode steps). */
export const ROUTER_SPLIT_MAX_ROWS = 8;
/** The router's kernel for small steps: 'split' (a block per row and expert, where it fits) or 'block' (a block per row). ZINFER_ROUTER. */
export const ROUTER_MODES = ['split', 'block'] as const;
const routerMode = new EnvChoice(ROUTER_MODES, 'split', 'ZINFER_ROUTER');
export const setRouterMode = (m: (typeof ROUTER_MODES)[number]): void => routerMode.set(m);

/**
 * Whether a router launch runs split, a block per (row, expert) (moe_router_split, cuda/moe-router.cu): in
 * 'split' mode, for steps of up to ROUTER_SPLIT_MAX_ROWS rows whose rows are whole 16-byte vectors of the
 * weights and of the activations, and that a block's threads hold at ROUTER_SPLIT_VECS vectors each.
 */
export function routerSplits(rows: number, hidden: number, weightBytes: number, actBytes: number): boolean {
  const [n, v] = [16 / weightBytes, 16 / actBytes];
  return routerMode.get() === 'split' && rows <= ROUTER_SPLIT_MAX_ROWS && hidden % n === 0 && hidden % v === 0 && hidden <= ROUTER_SPLIT_VECS * ROUTER_THREADS * v;
}

/** Whether the CUDA kernels take this MoE node (top-k within the kernels' fixed shared arrays). */
export function moeSupported(node: OpNode): boolean {
  if (node.op === 'moeRouter') {
    const { experts, topK } = node.attrs;
    return experts >= 1 && experts <= MOE_MAX_EXPERTS && topK >= 1 && topK <= Math.min(experts, MOE_MAX_TOPK);
  }
  if (node.op === 'moeExperts') return node.attrs.topK >= 1 && node.attrs.topK <= MOE_MAX_TOPK;
  return true;
}

/** Values holding a routing ([rows, 2·topK]): stored as f32 in every activation mode. */
export function moeRoutingValues(graph: Graph): Set<ValueId> {
  const out = new Set<ValueId>();
  for (const n of graph.nodes) {
    if (n.op === 'moeRouter') out.add(n.output);
    if (n.op === 'moeExperts') out.add(n.inputs.routing);
  }
  return out;
}

function tables(ctx: StepContext): MoeTables {
  if (!ctx.moe) throw new BackendError('MoE node in a cuda program compiled without MoE tables');
  return ctx.moe;
}

export function launchMoeRouter(ctx: StepContext, node: OpNode<'moeRouter'>): void {
  const w = ctx.weight(node.attrs.weight);
  const [experts, hidden] = w.shape;
  const { topK, normalize } = node.attrs;
  const moe = tables(ctx);
  // Row r of a decode step is sequence r (also for 'selected' rows): padded rows carry the pad slot.
  const slots = moe.padSlot >= 0 ? ctx.metaPtr(ctx.meta.at.slots) : 0n;
  // A fused RMSNorm (exec-plan.ts): the router normalizes its input's rows, writes them as the norm's
  // output for the later readers, and keeps them in shared memory (f32) for its own dot products.
  const norm = ctx.plan.routerNorms.get(node);
  const x = ctx.value(norm ? norm.inputs.x : node.inputs.x);
  const [xn, normW, eps] = norm ? [ctx.value(norm.output), ctx.weight(norm.attrs.weight).ptr, norm.attrs.eps] : [0n, 0n, 0];
  const rows = ctx.rowsOf(node.output);
  const args = [ctx.value(node.output), w.ptr, x, hidden, experts, topK, normalize ? 1 : 0, moe.counters(node), slots, moe.padSlot, xn, normW, eps];
  const [wBytes, aBytes] = [dtypeBytes(w.dtype), dtypeBytes(ctx.act)];
  if (routerSplits(rows, hidden, wBytes, aBytes)) {
    const { logits, done } = moe.splitRouterScratch(ROUTER_SPLIT_MAX_ROWS, experts);
    // The logits, then (weight vectors other than the activations') the row in f32: routerSharedBytes' layout.
    ctx.gpu.launch(`moe_router_split_${w.dtype}_${ctx.act}`, { x: rows, y: experts }, ROUTER_THREADS, [...args, logits, done], routerSharedBytes(experts, hidden, wBytes !== aBytes));
    return;
  }
  ctx.gpu.launch(`moe_router_${w.dtype}_${ctx.act}`, { x: rows }, ROUTER_THREADS, args, routerSharedBytes(experts, hidden, norm !== undefined));
}

/** The experts' common intermediate size and weight dtype (null: this program holds none of them). */
function expertShape(ctx: StepContext, node: OpNode<'moeExperts'>): { inter: number; dtype: string } | null {
  const [first] = node.attrs.experts;
  if (!first) return null;
  const g = ctx.weight(first.gate);
  for (const e of node.attrs.experts) {
    for (const name of [e.gate, e.up, e.down]) {
      const w = ctx.weight(name);
      const want = name === e.down ? [g.shape[1], g.shape[0]] : g.shape;
      if (w.dtype !== g.dtype || w.shape[0] !== want[0] || w.shape[1] !== want[1]) {
        throw new BackendError(`expert ${e.id} differs from expert ${first.id}: the CUDA MoE kernels take experts of one shape and dtype`, {
          tensor: name, expected: `${g.dtype} [${want.join(', ')}]`, found: `${w.dtype} [${w.shape.join(', ')}]`,
        });
      }
    }
  }
  return { inter: g.shape[0], dtype: g.dtype };
}

export function launchMoeExperts(ctx: StepContext, node: OpNode<'moeExperts'>): void {
  const rows = ctx.rowsOf(node.output);
  const hidden = ctx.width(node.output);
  const { topK } = node.attrs;
  const { ptr: table, nLocal, mapLen } = tables(ctx).table(ctx, node);
  const shape = expertShape(ctx, node);
  const inter = shape?.inter ?? 0;
  const kind = `${shape?.dtype ?? ctx.act}_${ctx.act}`; // no local experts: any entry point writes the zeros
  const act = ACTIVATION_CODES[node.attrs.fn];
  const [out, x, routing] = [ctx.value(node.output), ctx.value(node.inputs.x), ctx.value(node.inputs.routing)];
  const slots = rows * topK;
  const hBytes = align256(slots * inter * dtypeBytes(ctx.act));
  const { gpu } = ctx;
  if (rows <= MOE_SMALL_ROWS) {
    const h = ctx.scratch(Math.max(256, hBytes)); // [slots, inter]
    if (shape && inter > 0 && moeExpertsMma(rows, shape.dtype, ctx.act, hidden, inter)) {
      gpu.launch(`moe_gate_up_m_${kind}`, { x: Math.ceil(inter / MOE_MMA_GATE_UP_FEATURES), y: slots }, MOE_THREADS, [h, x, routing, table, nLocal, mapLen, 0n, 0n, rows, topK, hidden, inter, act]);
      gpu.launch(`moe_down_m_${kind}`, { x: Math.ceil(hidden / MOE_MMA_DOWN_FEATURES) }, MOE_THREADS, [out, h, routing, table, nLocal, mapLen, rows, topK, hidden, inter]);
      return;
    }
    const R = gemvRows(rows);
    if (inter > 0) {
      gpu.launch(`moe_gate_up${R}_${kind}`, { x: Math.ceil(inter / 2), y: slots }, MOE_THREADS, [h, x, routing, table, nLocal, mapLen, 0n, 0n, rows, topK, hidden, inter, act]);
    }
    gpu.launch(`moe_down${R}_${kind}`, { x: Math.ceil(hidden / MOE_WROWS) }, MOE_THREADS, [out, h, routing, table, nLocal, mapLen, rows, topK, hidden, inter]);
    return;
  }
  const path = moeStepPath(rows, nLocal, topK, ctx.capturing);
  if (path !== 'tiles' && nLocal > 0 && inter > 0) {
    const d = denseExperts(ctx, node); // the experts side by side: both GEMM paths index them from one pointer
    if (d && (path === 'grouped' ? launchMoeGrouped(ctx, node, d, rows) : launchMoeDense(ctx, node, d, rows))) return;
  }
  const maxTiles = Math.ceil(slots / MOE_TILE) + nLocal;
  const at = largeLayout(slots, maxTiles, hBytes, hidden);
  const base = ctx.scratch(at.total);
  const [tiles, order, h, y] = [at.tiles, at.order, at.h, at.y].map((o) => base + BigInt(o));
  const tileGrid = Math.min(maxTiles, MAX_GRID_Y);
  if (nLocal > 0) {
    gpu.launch('moe_permute', { x: 1 }, 1024, [tiles, order, routing, table, nLocal, mapLen, rows, topK], 2 * nLocal * 4);
    gpu.launch(`moe_gate_up${MOE_TILE}_${kind}`, { x: Math.ceil(inter / 2), y: tileGrid }, MOE_THREADS, [h, x, routing, table, nLocal, mapLen, tiles, order, rows, topK, hidden, inter, act]);
    gpu.launch(`moe_down_tiles_${kind}`, { x: Math.ceil(hidden / MOE_WROWS), y: tileGrid }, MOE_THREADS, [y, h, table, tiles, order, hidden, inter]);
  }
  gpu.launch(`moe_combine_${ctx.act}`, flatGrid(rows * hidden), 256, [out, y, routing, table, nLocal, mapLen, rows, topK, hidden, 0, 0n]);
}

/** Byte offsets in the scratch of a large step: tile list, slots grouped by expert, h [slots, inter], y [slots, hidden] f32. */
export function largeLayout(slots: number, maxTiles: number, hBytes: number, hidden: number): { tiles: number; order: number; h: number; y: number; total: number } {
  const tiles = 0;
  const order = tiles + align256((1 + 3 * maxTiles) * 4);
  const h = order + align256(slots * 4);
  const y = h + hBytes;
  return { tiles, order, h, y, total: y + align256(slots * hidden * 4) };
}

export function launchSigmoidGate(ctx: StepContext, node: OpNode<'sigmoidGate'>): void {
  const width = ctx.width(node.output);
  const n = ctx.rowsOf(node.output) * width;
  ctx.gpu.launch(`sigmoid_gate_${ctx.act}`, flatGrid(n), 256, [ctx.value(node.output), ctx.value(node.inputs.x), ctx.value(node.inputs.gate), n, width]);
}
