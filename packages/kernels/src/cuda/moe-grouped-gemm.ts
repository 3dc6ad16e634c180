// The grouped path of moeExperts for prompt steps: every local expert runs cuBLAS GEMMs over only the rows
// routed to it. The host reads the step's routing (one wait for the device a MoE layer), groups each expert's
// slots, and uploads where each grouped row comes from (src) and where each slot's result went (inv). Then, a
// pass of rows at a time: x gathered into expert order (gather_rows), and for each expert gate|up (one strided
// batch of 2, f32) → moe_dense_act → down (f32), and moe_combine reads each slot's row through inv (layout 2).
// The dense path computes every expert over every row (experts ÷ top-k times the work); the tile path reads an
// expert's weights once per 8 of its rows. This one does neither, at the price of the wait and of a few
// launches an expert, so it runs only where a step is not captured (a graph cannot wait for the host) and
// its experts get enough rows each (moe-prefill.ts).
// An expert's GEMM rows round up to ROW_GRAIN (the padding rows repeat row 0 and are never read back), so
// prompt after prompt asks cuBLASLt for a bounded set of shapes.
import { BackendError, type OpNode } from '@zinfer/core';
import { ACTIVATION_CODES } from './activation-codes.js';
import type { DenseExperts } from './moe-dense.js';
import { align256, dtypeBytes, flatGrid, threadsFor, type StepContext } from './step-context.js';

/** An expert's GEMM rows are a multiple of this. */
export const ROW_GRAIN = 32;
/** Scratch a pass of the grouped path may take; its rows are as many as fit, in multiples of 64 (at least 64). */
const PASS_BYTES = 256 * 2 ** 20;

/** One pass's slots grouped by local expert. */
export interface SlotGroups {
  /** Per local expert: its first grouped row, its slots, its GEMM rows (slots rounded up to ROW_GRAIN; 0 if none). */
  start: number[];
  count: number[];
  rows: number[];
  /** Grouped rows in all (Σ rows). */
  total: number;
  /** Grouped row → the pass's x row it reads (padding rows: 0). */
  src: Int32Array;
  /** Slot (row · topK + k) → its grouped row, or -1 where the slot's expert is not local. */
  inv: Int32Array;
}

/**
 * Groups the slots of `rows` rows by local expert, in slot order, from their routing ([rows, 2·topK] f32: ids
 * as floats, then weights) and the global id → local index map, as the kernels' local_expert reads them.
 */
export function groupSlots(routing: Float32Array, rows: number, topK: number, map: Int32Array, nLocal: number): SlotGroups {
  const slots = rows * topK;
  const expertOf = new Int32Array(slots);
  const count = new Array<number>(nLocal).fill(0);
  for (let s = 0; s < slots; s++) {
    const r = Math.floor(s / topK);
    const f = routing[r * 2 * topK + (s - r * topK)];
    const id = Math.trunc(f);
    const e = f >= 0 && id < map.length ? map[id] : -1;
    expertOf[s] = e;
    if (e >= 0) count[e]++;
  }
  const start: number[] = [];
  const padded: number[] = [];
  let total = 0;
  for (let e = 0; e < nLocal; e++) {
    start.push(total);
    padded.push(Math.ceil(count[e] / ROW_GRAIN) * ROW_GRAIN);
    total += padded[e];
  }
  const src = new Int32Array(total);
  const inv = new Int32Array(slots).fill(-1);
  const next = start.slice();
  for (let s = 0; s < slots; s++) {
    const e = expertOf[s];
    if (e < 0) continue;
    inv[s] = next[e];
    src[next[e]++] = Math.floor(s / topK);
  }
  return { start, count, rows: padded, total, src, inv };
}

/** Byte offsets in a pass's scratch: xg [total, hidden] A, y [total, hidden] f32, gu [2, most, inter] f32, h [most, inter] A, src, inv. */
export function groupedLayout(d: DenseExperts, total: number, most: number, slots: number, actBytes: number) {
  const xg = 0;
  const y = xg + align256(total * d.hidden * actBytes);
  const gu = y + align256(total * d.hidden * 4);
  const h = gu + align256(2 * most * d.inter * 4);
  const src = h + align256(most * d.inter * actBytes);
  const inv = src + align256(total * 4);
  return { xg, y, gu, h, src, inv, total: inv + align256(slots * 4) };
}

/** Rows of one pass: as many as PASS_BYTES holds at worst (every slot padded, one expert taking every row). */
export function groupedPassRows(d: DenseExperts, topK: number, actBytes: number, rows: number): number {
  const perSlot = d.hidden * (actBytes + 4) + 8;
  const perRow = topK * perSlot + d.inter * (8 + actBytes);
  const fit = Math.floor((PASS_BYTES - d.count * (ROW_GRAIN - 1) * perSlot) / perRow / 64) * 64;
  return Math.min(rows, Math.max(64, fit));
}

/** The node's global expert id → local index map (as moe-tables.ts uploads it). */
function hostMap(node: OpNode<'moeExperts'>, mapLen: number): Int32Array {
  const map = new Int32Array(mapLen).fill(-1);
  node.attrs.experts.forEach((e, i) => (map[e.id] = i));
  return map;
}

/**
 * Enqueues the grouped path over `rows` rows (it waits for the device to read the routing first); false when
 * cuBLASLt refuses a GEMM, and then the caller's tile path rewrites every output row.
 */
export function launchMoeGrouped(ctx: StepContext, node: OpNode<'moeExperts'>, d: DenseExperts, rows: number): boolean {
  const { gpu } = ctx;
  if (!gpu.gemm || ctx.capturing) return false;
  const { topK } = node.attrs;
  const A = dtypeBytes(ctx.act);
  const { ptr: table, nLocal, mapLen } = ctx.moe!.table(ctx, node);
  const routingPtr = ctx.value(node.inputs.routing);
  const routing = new Float32Array(rows * 2 * topK);
  gpu.download(routing, routingPtr); // waits for the router
  const map = hostMap(node, mapLen);
  const passRows = groupedPassRows(d, topK, A, rows);
  const passes: { r0: number; n: number; g: SlotGroups }[] = [];
  for (let r0 = 0; r0 < rows; r0 += passRows) {
    const n = Math.min(passRows, rows - r0);
    passes.push({ r0, n, g: groupSlots(routing.subarray(r0 * 2 * topK, (r0 + n) * 2 * topK), n, topK, map, nLocal) });
  }
  const layouts = passes.map(({ n, g }) => groupedLayout(d, g.total, Math.max(0, ...g.rows), n * topK, A));
  const base = ctx.scratch(Math.max(...layouts.map((l) => l.total)));
  const [x, out] = [ctx.value(node.inputs.x), ctx.value(node.output)];
  const rowBytes = d.hidden * A;
  try {
    passes.forEach(({ r0, n, g }, i) => {
      const at = layouts[i];
      const [xg, y, gu, h, src, inv] = [at.xg, at.y, at.gu, at.h, at.src, at.inv].map((o) => base + BigInt(o));
      gpu.upload(inv, g.inv);
      if (g.total > 0) {
        gpu.upload(src, g.src);
        gpu.launch(`gather_rows_${ctx.act}`, { x: g.total }, threadsFor(d.hidden), [xg, x + BigInt(r0 * rowBytes), src, d.hidden]);
      }
      for (let e = 0; e < nLocal; e++) {
        const m = g.rows[e];
        if (m === 0) continue;
        const gateUp = d.gateUp + BigInt(2 * e * d.inter * d.hidden * A);
        const xe = xg + BigInt(g.start[e] * rowBytes);
        gpu.gemm!({ y: gu, x: xe, w: gateUp, dtype: ctx.act, yDtype: 'f32', rows: m, inF: d.hidden, outF: d.inter, batch: { count: 2, strideW: d.inter * d.hidden, strideY: m * d.inter } });
        gpu.launch(`moe_dense_act_${ctx.act}`, flatGrid(m * d.inter), 256, [h, gu, 1, m, d.inter, ACTIVATION_CODES[node.attrs.fn]]);
        const down = d.down + BigInt(e * d.hidden * d.inter * A);
        gpu.gemm!({ y: y + BigInt(g.start[e] * d.hidden * 4), x: h, w: down, dtype: ctx.act, yDtype: 'f32', rows: m, inF: d.inter, outF: d.hidden });
      }
      const routingPass = routingPtr + BigInt(r0 * 2 * topK * 4);
      gpu.launch(`moe_combine_${ctx.act}`, flatGrid(n * d.hidden), 256, [out + BigInt(r0 * rowBytes), y, routingPass, table, nLocal, mapLen, n, topK, d.hidden, 2, inv]);
    });
  } catch (e) {
    // A refusal enqueues nothing more; what went before wrote scratch and rows the tile path rewrites.
    if (!(e instanceof BackendError) || !e.message.includes('cuBLASLt')) throw e;
    ctx.moe!.denseRefused.add(node);
    return false;
  }
  return true;
}
