// The grouped path of moeExperts for prompt steps: every local expert runs cuBLAS GEMMs over only the rows
// routed to it. The host reads the step's routing (one wait for the device a MoE layer), groups each expert's
// slots, and uploads where each grouped row comes from (src) and where each slot's result went (inv). Then, a
// pass of rows at a time: x gathered into expert order (gather_rows), the experts' gate|up (f32) →
// moe_dense_act → down (f32), and moe_combine reads each slot's row through inv (layout 2). Two layouts
// (ZINFER_MOE_GROUPED; auto: batched past BATCHED_FROM_EXPERTS local experts):
//   batched: every expert padded to the pass's largest expert, so all of them run as strided batches (gates,
//            ups, downs: three GEMM launches and one activation a pass, whatever the number of experts; the
//            padding and the larger scratch, which splits big steps into more passes, cost few experts more);
//   experts: each expert padded to a multiple of ROW_GRAIN rows and run on its own (three launches an expert).
// Layers on an H200, bf16, ms, batched / experts (bench/results/moe-prefill-h200-s22.json, callE): Mixtral
// (8 experts) 1,024 rows 2.69 / 1.99, 2,048 rows 5.34 / 3.04; Qwen1.5-MoE (60) 256 rows 0.56 / 2.39, 2,048
// rows 2.45 / 3.73.
// The dense path computes every expert over every row (experts ÷ top-k times the work); the tile path reads an
// expert's weights once per 8 of its rows. This one does neither, at the price of the wait, so it runs only
// where a step is not captured (a graph cannot wait for the host) and its experts get enough rows each
// (moe-prefill.ts). Padding rows repeat row 0 and are never read back; rows rounded to ROW_GRAIN keep the GEMM
// shapes cuBLASLt plans for prompt after prompt to a bounded set.
import { BackendError, type OpNode } from '@zinfer/core';
import { ACTIVATION_CODES } from './activation-codes.js';
import { cublasRefused, type DenseExperts } from './moe-dense.js';
import { EnvChoice } from './env-choice.js';
import { align256, dtypeBytes, flatGrid, threadsFor, type StepContext } from './step-context.js';

/** An expert's GEMM rows are a multiple of this. */
export const ROW_GRAIN = 32;
/** Scratch a pass of the grouped path may take (default 256 MiB): a step's rows are split into passes (multiples of 64 rows) until each fits. */
let passBytes = 256 * 2 ** 20;
export function setMoeGroupedPassBytes(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new BackendError(`the grouped pass's scratch is ${bytes} bytes; it takes a positive integer`, { field: 'groupedPassBytes' });
  passBytes = bytes;
}

export const MOE_GROUPED_LAYOUTS = ['auto', 'batched', 'experts'] as const;
export const moeGroupedLayout = new EnvChoice(MOE_GROUPED_LAYOUTS, 'auto', 'ZINFER_MOE_GROUPED');
/** Local experts past which 'auto' takes the batched layout. */
export const BATCHED_FROM_EXPERTS = 16;

/** The layout of a step over `nLocal` local experts. */
export function groupedLayoutFor(nLocal: number): 'batched' | 'experts' {
  const mode = moeGroupedLayout.get();
  return mode === 'auto' ? (nLocal > BATCHED_FROM_EXPERTS ? 'batched' : 'experts') : mode;
}

/**
 * Slots a local expert must get on average for the grouped path to beat the dense one (moe-prefill.ts): its
 * GEMMs are small below that, and each expert's own launches (experts layout) cost more than batched ones.
 * Measured: Mixtral's 8 experts at 128 rows (32 slots) grouped 1.09 ms against dense 0.84, at 256 rows 1.12
 * against 1.76; Qwen1.5-MoE's 60 batched at 128 rows (8.5 slots) 0.66 against 0.47–0.51, at 256 rows 0.56
 * against 0.85.
 */
export function groupedMinSlots(nLocal: number): number {
  return groupedLayoutFor(nLocal) === 'batched' ? 16 : 64;
}

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
 * as floats, then weights) and the global id → local index map, as the kernels' local_expert reads them. Each
 * expert's rows are its slots rounded up to ROW_GRAIN, or (uniform) the largest expert's.
 */
export function groupSlots(routing: Float32Array, rows: number, topK: number, map: Int32Array, nLocal: number, uniform = false): SlotGroups {
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
  // uniform (the batched layout): every expert as many rows as the largest.
  const grain = (c: number) => Math.ceil(c / ROW_GRAIN) * ROW_GRAIN;
  const most = grain(Math.max(0, ...count));
  const start: number[] = [];
  const padded: number[] = [];
  let total = 0;
  for (let e = 0; e < nLocal; e++) {
    start.push(total);
    padded.push(uniform ? most : grain(count[e]));
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

/**
 * Byte offsets in a pass's scratch: xg [total, hidden] A, y [total, hidden] f32, gu [2, most, inter] f32, h
 * [most, inter] A, src, inv; `most` is the rows one GEMM launch covers (an expert's, or every expert's).
 */
export function groupedLayout(d: DenseExperts, total: number, most: number, slots: number, actBytes: number) {
  const xg = 0;
  const y = xg + align256(total * d.hidden * actBytes);
  const gu = y + align256(total * d.hidden * 4);
  const h = gu + align256(2 * most * d.inter * 4);
  const src = h + align256(most * d.inter * actBytes);
  const inv = src + align256(total * 4);
  return { xg, y, gu, h, src, inv, total: inv + align256(slots * 4) };
}

type Layout = ReturnType<typeof groupedLayout>;
interface Pass {
  r0: number;
  n: number;
  g: SlotGroups;
  at: Layout;
}

/** A step's passes: its rows grouped in one pass, or split in passes of 64 rows or more until each pass's scratch fits passBytes. */
function planPasses(rows: number, group: (r0: number, n: number) => SlotGroups, layout: (n: number, g: SlotGroups) => Layout): Pass[] {
  for (let passRows = rows; ; ) {
    const passes: Pass[] = [];
    for (let r0 = 0; r0 < rows; r0 += passRows) {
      const n = Math.min(passRows, rows - r0);
      const g = group(r0, n);
      passes.push({ r0, n, g, at: layout(n, g) });
    }
    const worst = Math.max(...passes.map((p) => p.at.total));
    if (worst <= passBytes || passRows <= 64) return passes;
    passRows = Math.max(64, Math.min(passRows - 64, Math.floor((passRows * passBytes) / worst / 64) * 64));
  }
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
  const { ptr: table, nLocal, mapLen, map } = ctx.moe!.table(ctx, node);
  const routingPtr = ctx.value(node.inputs.routing);
  const routing = new Float32Array(rows * 2 * topK);
  gpu.download(routing, routingPtr); // waits for the router
  const batched = groupedLayoutFor(nLocal) === 'batched';
  const layoutOf = (n: number, g: SlotGroups) => groupedLayout(d, g.total, batched ? g.total : Math.max(0, ...g.rows), n * topK, A);
  const group = (r0: number, n: number) => groupSlots(routing.subarray(r0 * 2 * topK, (r0 + n) * 2 * topK), n, topK, map, nLocal, batched);
  const passes = planPasses(rows, group, layoutOf);
  const base = ctx.scratch(Math.max(...passes.map((p) => p.at.total)));
  const [x, out] = [ctx.value(node.inputs.x), ctx.value(node.output)];
  const rowBytes = d.hidden * A;
  const act = ACTIVATION_CODES[node.attrs.fn];
  const matrixBytes = BigInt(d.inter * d.hidden * A); // one expert's gate, up or down
  try {
    passes.forEach(({ r0, n, g, at }) => {
      const [xg, y, gu, h, src, inv] = [at.xg, at.y, at.gu, at.h, at.src, at.inv].map((o) => base + BigInt(o));
      gpu.upload(inv, g.inv);
      if (g.total > 0) {
        gpu.upload(src, g.src);
        gpu.launch(`gather_rows_${ctx.act}`, { x: g.total }, threadsFor(d.hidden), [xg, x + BigInt(r0 * rowBytes), src, d.hidden]);
      }
      if (batched && g.total > 0) {
        // Gates, then ups, into gu [expert][gate, up][m][inter]: moe_dense_act's [2·experts, m, inter].
        const m = g.rows[0];
        for (const part of [0, 1]) {
          const w = d.gateUp + BigInt(part) * matrixBytes;
          gpu.gemm!({ y: gu + BigInt(part * m * d.inter * 4), x: xg, w, dtype: ctx.act, yDtype: 'f32', rows: m, inF: d.hidden, outF: d.inter, batch: { count: nLocal, strideW: 2 * d.inter * d.hidden, strideY: 2 * m * d.inter, strideX: m * d.hidden } });
        }
        gpu.launch(`moe_dense_act_${ctx.act}`, flatGrid(nLocal * m * d.inter), 256, [h, gu, nLocal, m, d.inter, act]);
        gpu.gemm!({ y, x: h, w: d.down, dtype: ctx.act, yDtype: 'f32', rows: m, inF: d.inter, outF: d.hidden, batch: { count: nLocal, strideW: d.hidden * d.inter, strideY: m * d.hidden, strideX: m * d.inter } });
      }
      for (let e = 0; !batched && e < nLocal; e++) {
        const m = g.rows[e];
        if (m === 0) continue;
        const xe = xg + BigInt(g.start[e] * rowBytes);
        gpu.gemm!({ y: gu, x: xe, w: d.gateUp + BigInt(2 * e) * matrixBytes, dtype: ctx.act, yDtype: 'f32', rows: m, inF: d.hidden, outF: d.inter, batch: { count: 2, strideW: d.inter * d.hidden, strideY: m * d.inter } });
        gpu.launch(`moe_dense_act_${ctx.act}`, flatGrid(m * d.inter), 256, [h, gu, 1, m, d.inter, act]);
        gpu.gemm!({ y: y + BigInt(g.start[e] * d.hidden * 4), x: h, w: d.down + BigInt(e) * matrixBytes, dtype: ctx.act, yDtype: 'f32', rows: m, inF: d.inter, outF: d.hidden });
      }
      const routingPass = routingPtr + BigInt(r0 * 2 * topK * 4);
      gpu.launch(`moe_combine_${ctx.act}`, flatGrid(n * d.hidden), 256, [out + BigInt(r0 * rowBytes), y, routingPass, table, nLocal, mapLen, n, topK, d.hidden, 2, inv]);
    });
  } catch (e) {
    return cublasRefused(ctx, node, e);
  }
  return true;
}
