// linear: y = x · Wᵀ (+ bias) (→ activation) (+ residual), over one or more weight matrices that share
// the input x (q/k/v, gate/up). W [N, K] is packed in panels of 8 rows in its stored dtype (see
// scripts/asm-microkernels.mjs and src/cpu/pack.ts) and converted in registers.
//
// Threads split the outputs (the concatenated panels of every part) into contiguous ranges, and the rows
// too when a step has many rows and few panels a thread (rowGroups). Each thread packs its current block
// of x rows into its scratch, then, for each of its panels: a block of few rows
// (decode) runs the 2×8 / 1×8 kernels over the whole panel, a row pair at a time, so the panel streams
// from memory front to back once and is re-read from cache; a block of many rows (prefill, batched
// decode) runs the 8×4 kernel over each half panel and every group of 8 rows (one weight load and
// conversion per 8 rows, 32 accumulators: with FMA both pipes stay busy; the plain build two 4×4 calls),
// a last group of 4 rows or fewer the 4×4 one. Every output
// element is computed by the same sequence of operations whatever the kernel, so results depend neither
// on the thread count nor on how many rows the step has.
import { ACT_NONE, alignedShareStart, argI, argP, DT_F16, DT_F32, loadW4 } from './common';
import { act4 } from './math';
import { mk_bf16_1x8, mk_bf16_2x8, mk_bf16_4x4, mk_bf16_8x4, mk_f16_1x8, mk_f16_2x8, mk_f16_4x4, mk_f16_8x4, mk_f32_1x8, mk_f32_2x8, mk_f32_4x4, mk_f32_8x4, MANY_ROW_TILE } from './microkernels';

/** Rows of the many-row kernel (8×4 over half panels); row blocks of fewer rows run 2×8 / 1×8. */
const RB: i32 = 8;
const MANY_ROWS: i32 = 16;
/** Rows per panel. */
const PANEL: i32 = 8;
/** Floats per tile row. */
const TILE_STRIDE: i32 = 8;
const PART_WORDS: i32 = 8;
const PARTS_AT: i32 = 8;

/**
 * args: 0 x (f32 [rows, K]), 1 rows, 2 K, 3 scratch, 4 scratch bytes per thread, 5 rows per row block,
 * 6 gated fn (−1: none), 7 parts; then per part: w (packed), dtype, N, bias (0: none), bias dtype, out,
 * residual (0: none), activation. All parts share the dtype. Gated: parts 0 and 1 are gate and up (same N);
 * out (part 0's) = fn(gate + bias) · (up + bias).
 */
export function k_linear(args: usize, tid: i32, nt: i32): void {
  const x = argP(args, 0);
  const rows = argI(args, 1);
  const K = argI(args, 2);
  const scratch = argP(args, 3) + <usize>tid * argP(args, 4);
  const rowBlock = argI(args, 5);
  const gatedFn = argI(args, 6);
  const nparts = argI(args, 7);
  const dt = argI(args, PARTS_AT + 1);
  let total: i32 = 0; // outputs, each part padded to whole panels
  if (gatedFn >= 0) total = padded(argI(args, PARTS_AT + 2));
  else for (let p = 0; p < nparts; p++) total += padded(argI(args, PARTS_AT + p * PART_WORDS + 2));
  // Threads form a grid of G row groups × H output ranges (G = 1 unless the step has many rows and few
  // panels a thread: o and down of a small model at 256 rows have 36 panels for 16 threads).
  const G = rowGroups(rows, total / PANEL, nt);
  const H = nt / G;
  if (tid >= G * H) return;
  const g = tid / H;
  const lo = alignedShareStart(total, tid - g * H, H, PANEL);
  const hi = alignedShareStart(total, tid - g * H + 1, H, PANEL);
  const rowsEnd = alignedShareStart(rows, g + 1, G, RB);
  if (lo >= hi) return;
  const n8 = (K + 7) >> 3;
  const tile = scratch; // 2 tiles of RB × TILE_STRIDE floats (the second for gated "up")
  const xb = scratch + <usize>(2 * RB * TILE_STRIDE * 4);
  for (let r0 = alignedShareStart(rows, g, G, RB); r0 < rowsEnd; r0 += rowBlock) {
    const nr = min(rowBlock, rowsEnd - r0);
    packRows(x + <usize>r0 * <usize>K * 4, nr, K, xb, dt != DT_F32);
    if (gatedFn >= 0) {
      gatedBlock(args, xb, nr, r0, n8, lo, hi, gatedFn, tile);
      continue;
    }
    let base: i32 = 0;
    for (let p = 0; p < nparts; p++) {
      const part = args + <usize>((PARTS_AT + p * PART_WORDS) << 2);
      const n = padded(load<i32>(part, 8));
      const a = max(lo, base) - base;
      const b = min(hi, base + n) - base;
      if (a < b) partBlock(part, xb, nr, r0, n8, a, b, tile);
      base += n;
    }
  }
}

/**
 * Row groups of the thread grid: the G (threads per group H = ⌊nt / G⌋) with the least work on the
 * busiest thread, ⌈row units / G⌉ · ⌈panels / H⌉, keeping ≥ 2 units of RB rows a group (the 8×4 kernel's
 * path) and G = 1 on ties (each group reads the weights again). Results do not depend on it: every
 * output element is computed the same way whichever thread computes it.
 */
function rowGroups(rows: i32, panels: i32, nt: i32): i32 {
  const units = (rows + RB - 1) / RB;
  let best = 1;
  let bestCost = units * ((panels + nt - 1) / nt);
  for (let G = 2; G <= nt && units >= 2 * G; G++) {
    const H = nt / G;
    const cost = ((units + G - 1) / G) * ((panels + H - 1) / H);
    if (cost < bestCost) {
      best = G;
      bestCost = cost;
    }
  }
  return best;
}

@inline function padded(n: i32): i32 {
  return (n + PANEL - 1) & ~(PANEL - 1);
}

/** Panels covering outputs [a, b) (multiples of 8) of one part, rows r0 .. r0+nr (packed in xb). */
function partBlock(part: usize, xb: usize, nr: i32, r0: i32, n8: i32, a: i32, b: i32, tile: usize): void {
  const w = <usize>load<u32>(part);
  const dt = load<i32>(part, 4);
  const N = load<i32>(part, 8);
  const bias = <usize>load<u32>(part, 12);
  const bdt = load<i32>(part, 16);
  const out = <usize>load<u32>(part, 20);
  const res = <usize>load<u32>(part, 24);
  const fn = load<i32>(part, 28);
  const panelBytes = panelSize(dt, n8);
  for (let o = a; o < b; o += PANEL) {
    const wp = w + <usize>(o >> 3) * panelBytes;
    if (nr < MANY_ROWS) {
      // Whole panels, a row pair (or one row) at a time: the panel is read linearly once, then from cache.
      for (let r = 0; r < nr; r += 2) {
        const rr = min(2, nr - r);
        dots8(dt, xb, r, rr, n8, wp, tile);
        epilogue(tile, rr, r0 + r, o, min(PANEL, N - o), N, bias, bdt, fn, res, out);
      }
      continue;
    }
    for (let h = 0; h < PANEL && o + h < N; h += 4) {
      for (let r = 0; r < nr; r += RB) {
        const rr = min(RB, nr - r);
        dotsMany(dt, xb, r, rr, n8, wp, h, tile);
        epilogue(tile, rr, r0 + r, o + h, min(4, N - o - h), N, bias, bdt, fn, res, out);
      }
    }
  }
}

/** Gated pair: panels covering outputs [a, b) of fn(gate) · up. */
function gatedBlock(args: usize, xb: usize, nr: i32, r0: i32, n8: i32, a: i32, b: i32, fn: i32, tile: usize): void {
  const g = args + <usize>(PARTS_AT << 2);
  const u = g + <usize>(PART_WORDS << 2);
  const dt = load<i32>(g, 4);
  const N = load<i32>(g, 8);
  const wg = <usize>load<u32>(g);
  const wu = <usize>load<u32>(u);
  const bg = <usize>load<u32>(g, 12);
  const bu = <usize>load<u32>(u, 12);
  const bdt = load<i32>(g, 16);
  const out = <usize>load<u32>(g, 20);
  const tileU = tile + <usize>(RB * TILE_STRIDE * 4);
  const panelBytes = panelSize(dt, n8);
  for (let o = a; o < b; o += PANEL) {
    const off = <usize>(o >> 3) * panelBytes;
    if (nr < MANY_ROWS) {
      for (let r = 0; r < nr; r += 2) {
        const rr = min(2, nr - r);
        dots8(dt, xb, r, rr, n8, wg + off, tile);
        dots8(dt, xb, r, rr, n8, wu + off, tileU);
        gatedEpilogue(tile, tileU, rr, r0 + r, o, min(PANEL, N - o), N, bg, bu, bdt, fn, out);
      }
      continue;
    }
    for (let h = 0; h < PANEL && o + h < N; h += 4) {
      for (let r = 0; r < nr; r += RB) {
        const rr = min(RB, nr - r);
        dotsMany(dt, xb, r, rr, n8, wg + off, h, tile);
        dotsMany(dt, xb, r, rr, n8, wu + off, h, tileU);
        gatedEpilogue(tile, tileU, rr, r0 + r, o + h, min(4, N - o - h), N, bg, bu, bdt, fn, out);
      }
    }
  }
}

/** Bytes of one packed panel: 8 rows × n8 groups of 8 elements. */
@inline function panelSize(dt: i32, n8: i32): usize {
  return <usize>n8 * <usize>(dt == DT_F32 ? 256 : 128);
}

/** tile[i][0..8) for rows r .. r+nr (1 or 2) · the panel's 8 rows. */
@inline function dots8(dt: i32, xb: usize, r: i32, nr: i32, n8: i32, wp: usize, tile: usize): void {
  const x0 = xb + <usize>r * (<usize>n8 << 5);
  if (nr == 2) {
    const x1 = x0 + (<usize>n8 << 5);
    if (dt == DT_F32) mk_f32_2x8(x0, x1, wp, n8, tile);
    else if (dt == DT_F16) mk_f16_2x8(x0, x1, wp, n8, tile);
    else mk_bf16_2x8(x0, x1, wp, n8, tile);
  } else if (dt == DT_F32) mk_f32_1x8(x0, wp, n8, tile);
  else if (dt == DT_F16) mk_f16_1x8(x0, wp, n8, tile);
  else mk_bf16_1x8(x0, wp, n8, tile);
}

/** tile[i][0..4) for rows r .. r+nr (≤ 8) · panel rows h .. h+4: the 8×4 kernel, or 4×4 for 4 rows or fewer. */
@inline function dotsMany(dt: i32, xb: usize, r: i32, nr: i32, n8: i32, wp: usize, h: i32, tile: usize): void {
  if (nr <= 4) {
    dots4(dt, xb, r, nr, n8, wp, h, tile);
    return;
  }
  if (MANY_ROW_TILE == 4) {
    dots4(dt, xb, r, 4, n8, wp, h, tile);
    dots4(dt, xb, r + 4, nr - 4, n8, wp, h, tile + <usize>(4 * TILE_STRIDE * 4));
    return;
  }
  const xs = <usize>n8 << 5;
  const x0 = xb + <usize>r * xs;
  const last = x0 + <usize>(nr - 1) * xs;
  const x5 = nr > 5 ? x0 + 5 * xs : last;
  const x6 = nr > 6 ? x0 + 6 * xs : last;
  const x7 = nr > 7 ? x0 + 7 * xs : last;
  if (dt == DT_F32) mk_f32_8x4(x0, x0 + xs, x0 + 2 * xs, x0 + 3 * xs, x0 + 4 * xs, x5, x6, x7, wp + <usize>(h << 5), n8, tile);
  else if (dt == DT_F16) mk_f16_8x4(x0, x0 + xs, x0 + 2 * xs, x0 + 3 * xs, x0 + 4 * xs, x5, x6, x7, wp + <usize>(h << 4), n8, tile);
  else mk_bf16_8x4(x0, x0 + xs, x0 + 2 * xs, x0 + 3 * xs, x0 + 4 * xs, x5, x6, x7, wp + <usize>(h << 4), n8, tile);
}

/** tile[i][0..4) for rows r .. r+nr (≤ 4; missing rows repeat the last) · panel rows h .. h+4. */
@inline function dots4(dt: i32, xb: usize, r: i32, nr: i32, n8: i32, wp: usize, h: i32, tile: usize): void {
  const xs = <usize>n8 << 5;
  const x0 = xb + <usize>r * xs;
  const last = x0 + <usize>(nr - 1) * xs;
  const x1 = nr > 1 ? x0 + xs : last;
  const x2 = nr > 2 ? x0 + 2 * xs : last;
  const x3 = nr > 3 ? x0 + 3 * xs : last;
  if (dt == DT_F32) mk_f32_4x4(x0, x1, x2, x3, wp + <usize>(h << 5), n8, tile);
  else if (dt == DT_F16) mk_f16_4x4(x0, x1, x2, x3, wp + <usize>(h << 4), n8, tile);
  else mk_bf16_4x4(x0, x1, x2, x3, wp + <usize>(h << 4), n8, tile);
}

/** out[row][o + j] = act(tile[i][j] + bias[o + j]) + residual, for i < nr, j < no. */
@inline function epilogue(tile: usize, nr: i32, row0: i32, o: i32, no: i32, N: i32, bias: usize, bdt: i32, fn: i32, res: usize, out: usize): void {
  for (let i = 0; i < nr; i++) {
    const t = tile + <usize>(i * TILE_STRIDE * 4);
    for (let j = 0; j < no; j += 4) {
      let v = v128.load(t + <usize>(j << 2));
      if (bias) v = f32x4.add(v, loadW4(bias, o + j, bdt));
      if (fn != ACT_NONE) v = act4(fn, v);
      const at = (<usize>(row0 + i) * <usize>N + <usize>(o + j)) << 2;
      if (res) v = f32x4.add(v, v128.load(res + at));
      store4(out + at, v, no - j);
    }
  }
}

@inline function gatedEpilogue(tg: usize, tu: usize, nr: i32, row0: i32, o: i32, no: i32, N: i32, bg: usize, bu: usize, bdt: i32, fn: i32, out: usize): void {
  for (let i = 0; i < nr; i++) {
    const off = <usize>(i * TILE_STRIDE * 4);
    for (let j = 0; j < no; j += 4) {
      let vg = v128.load(tg + off + <usize>(j << 2));
      let vu = v128.load(tu + off + <usize>(j << 2));
      if (bg) vg = f32x4.add(vg, loadW4(bg, o + j, bdt));
      if (bu) vu = f32x4.add(vu, loadW4(bu, o + j, bdt));
      const at = (<usize>(row0 + i) * <usize>N + <usize>(o + j)) << 2;
      store4(out + at, f32x4.mul(act4(fn, vg), vu), no - j);
    }
  }
}

@inline function store4(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/**
 * Packs nr rows of x [nr, K] into dst [nr, 8·⌈K/8⌉]: groups of 8, zero-padded; with `interleave` (16-bit
 * weights) each group as elements 0,2,4,6,1,3,5,7.
 */
function packRows(x: usize, nr: i32, K: i32, dst: usize, interleave: bool): void {
  const full = K >> 3;
  const rest = K & 7;
  for (let r = 0; r < nr; r++) {
    let s = x + (<usize>r * <usize>K << 2);
    let d = dst + (<usize>r * <usize>((full + (rest ? 1 : 0)) << 3) << 2);
    for (let g = 0; g < full; g++) {
      store8(d, v128.load(s), v128.load(s, 16), interleave);
      s += 32;
      d += 32;
    }
    if (rest) {
      let a = f32x4.splat(0);
      let b = f32x4.splat(0);
      for (let k = 0; k < rest; k++) {
        const v = load<f32>(s + (<usize>k << 2));
        if (k == 0) a = f32x4.replace_lane(a, 0, v);
        else if (k == 1) a = f32x4.replace_lane(a, 1, v);
        else if (k == 2) a = f32x4.replace_lane(a, 2, v);
        else if (k == 3) a = f32x4.replace_lane(a, 3, v);
        else if (k == 4) b = f32x4.replace_lane(b, 0, v);
        else if (k == 5) b = f32x4.replace_lane(b, 1, v);
        else b = f32x4.replace_lane(b, 2, v);
      }
      store8(d, a, b, interleave);
    }
  }
}

@inline function store8(d: usize, a: v128, b: v128, interleave: bool): void {
  if (interleave) {
    v128.store(d, i32x4.shuffle(a, b, 0, 2, 4, 6));
    v128.store(d, i32x4.shuffle(a, b, 1, 3, 5, 7), 16);
  } else {
    v128.store(d, a);
    v128.store(d, b, 16);
  }
}
