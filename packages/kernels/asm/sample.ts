// Program.runSample on the pool: each row's token from its logits, as core's TokenFilter.pick picks it
// (packages/core/src/sampling/token-filter.ts): the repetition penalty, then greedy argmax, or
// temperature → top-k → top-p → min-p → the draw that walks the kept ids in ascending order. The same
// steps in the same order, the same quickselect and partition (so the same f64 sums), and expd for the
// weights (fdlibm's exp, as V8's Math.exp): the cpu backend picks the ids the host filter picks, but the
// rows of a step are split over the threads instead of running one after another on the main thread.
import { argI, argP, shareStart } from './common';
import { expd, expd2 } from './math';

// Row parameters: f64 [rows][PARAMS] at args 3, in this order.
const P_TEMPERATURE = 0, P_TOP_K = 1, P_TOP_P = 2, P_MIN_P = 3, P_PENALTY = 4, P_UNIFORM = 5, PARAMS = 6;

/**
 * args: 0 logits (f32 [rows, width]), 1 rows, 2 width, 3 row parameters (f64 [rows][6]), 4 penalized
 * ranges (i32 [rows][2]: start, count into 5), 5 penalized ids (i32, checked to lie in [0, width)),
 * 6 out (i32 [rows]), 7 scratch (one area a thread, for min(rows, threads) threads), 8 bytes of an area
 * (weights f64 [width], scores f32 [width], ids i32 [width], kept u8 [width], in that order).
 */
export function k_sample(args: usize, tid: i32, nt: i32): void {
  const rows = argI(args, 1);
  const width = argI(args, 2);
  const use = min(nt, rows);
  if (tid >= use) return;
  const area = argP(args, 7) + <usize>tid * <usize>argI(args, 8);
  const weights = area;
  const scores = weights + (<usize>width << 3);
  const ids = scores + (<usize>width << 2);
  const kept = ids + (<usize>width << 2);
  memory.fill(kept, 0, <usize>width);
  const hi = shareStart(rows, tid + 1, use);
  for (let r = shareStart(rows, tid, use); r < hi; r++) {
    const logits = argP(args, 0) + (<usize>r * <usize>width << 2);
    const p = argP(args, 3) + (<usize>r * PARAMS << 3);
    const range = argP(args, 4) + (<usize>r << 3);
    const penalized = argP(args, 5) + (<usize>load<i32>(range) << 2);
    const id = pick(logits, width, p, penalized, load<i32>(range, 4), weights, scores, ids, kept);
    store<i32>(argP(args, 6) + (<usize>r << 2), id);
  }
}

@inline function sc(scores: usize, i: i32): f32 {
  return load<f32>(scores + (<usize>i << 2));
}
@inline function idAt(ids: usize, i: i32): i32 {
  return load<i32>(ids + (<usize>i << 2));
}
@inline function setId(ids: usize, i: i32, v: i32): void {
  store<i32>(ids + (<usize>i << 2), v);
}
@inline function w(weights: usize, id: i32): f64 {
  return load<f64>(weights + (<usize>id << 3));
}
@inline function swap(ids: usize, i: i32, j: i32): void {
  const t = idAt(ids, i);
  setId(ids, i, idAt(ids, j));
  setId(ids, j, t);
}
/** TokenFilter's order: higher score first, ties by lower id (a strict total order). */
@inline function before(scores: usize, a: i32, b: i32): bool {
  const x = sc(scores, a), y = sc(scores, b);
  return x > y || (x == y && a < b);
}

function pick(logits: usize, width: i32, p: usize, penalized: usize, nPenalized: i32, weights: usize, scores: usize, ids: usize, kept: usize): i32 {
  const temperature = load<f64>(p + (P_TEMPERATURE << 3));
  const topK = <i32>load<f64>(p + (P_TOP_K << 3));
  const topP = load<f64>(p + (P_TOP_P << 3));
  const minP = load<f64>(p + (P_MIN_P << 3));
  const penalty = load<f64>(p + (P_PENALTY << 3));
  const u = load<f64>(p + (P_UNIFORM << 3));
  for (let i = 0; i < width; i++) {
    const v = load<f32>(logits + (<usize>i << 2));
    store<f32>(scores + (<usize>i << 2), v != v ? -Infinity : v);
  }
  if (penalty != 1) {
    for (let i = 0; i < nPenalized; i++) {
      const id = load<i32>(penalized + (<usize>i << 2));
      const v = <f64>load<f32>(logits + (<usize>id << 2));
      if (v == v) store<f32>(scores + (<usize>id << 2), <f32>(v > 0 ? v / penalty : v * penalty));
    }
  }
  let best = 0;
  for (let i = 1; i < width; i++) if (sc(scores, i) > sc(scores, best)) best = i;
  const max = <f64>sc(scores, best);
  if (temperature == 0 || !isFinite(max)) return best;
  let n = 0;
  for (let i = 0; i < width; i++) if (sc(scores, i) != -Infinity) setId(ids, n++, i);
  let ascending = true;
  if (topK > 0 && topK < n) {
    n = keepTopK(scores, ids, n, topK);
    ascending = false;
  }
  // Two weights at a time (expd2: the same bits as expd, lane by lane).
  const vmax = f64x2.splat(max);
  const vt = f64x2.splat(temperature);
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const a = idAt(ids, i);
    const b = idAt(ids, i + 1);
    const s = f64x2.replace_lane(f64x2.splat(<f64>sc(scores, a)), 1, <f64>sc(scores, b));
    const w2 = expd2(f64x2.div(f64x2.sub(s, vmax), vt));
    store<f64>(weights + (<usize>a << 3), f64x2.extract_lane(w2, 0));
    store<f64>(weights + (<usize>b << 3), f64x2.extract_lane(w2, 1));
  }
  if (i < n) {
    const id = idAt(ids, i);
    store<f64>(weights + (<usize>id << 3), expd((<f64>sc(scores, id) - max) / temperature));
  }
  if (topP < 1) {
    n = keepNucleus(scores, weights, ids, n, topP);
    ascending = false;
  }
  let m = 0;
  for (let i = 0; i < n; i++) {
    const id = idAt(ids, i);
    const x = w(weights, id);
    if (x > 0 && x >= minP) setId(ids, m++, id);
  }
  n = m;
  if (n == 1) return idAt(ids, 0);
  if (!ascending) sortKept(ids, kept, n);
  let total = 0.0;
  for (let i = 0; i < n; i++) total += w(weights, idAt(ids, i));
  let left = u * total;
  for (let i = 0; i < n - 1; i++) {
    left -= w(weights, idAt(ids, i));
    if (left < 0) return idAt(ids, i);
  }
  return idAt(ids, n - 1);
}

/**
 * ids[0..n) (distinct) in ascending order: an insertion sort when n is small, else marks over the vocab
 * walked in order (kept is left all zero). Any sort gives the same array, so the picks match the host's.
 */
function sortKept(ids: usize, kept: usize, n: i32): void {
  if (n <= 32) {
    for (let i = 1; i < n; i++) {
      const v = idAt(ids, i);
      let j = i - 1;
      for (; j >= 0 && idAt(ids, j) > v; j--) setId(ids, j + 1, idAt(ids, j));
      setId(ids, j + 1, v);
    }
    return;
  }
  for (let i = 0; i < n; i++) store<u8>(kept + <usize>idAt(ids, i), 1);
  let at = 0;
  for (let id = 0; at < n; id++) {
    if (load<u8>(kept + <usize>id)) {
      store<u8>(kept + <usize>id, 0);
      setId(ids, at++, id);
    }
  }
}

/** The k best plus any tied with the k-th (TokenFilter.keepTopK). */
function keepTopK(scores: usize, ids: usize, n: i32, k: i32): i32 {
  select(scores, ids, n, k);
  const kth = sc(scores, idAt(ids, k - 1));
  let m = k;
  for (let i = k; i < n; i++) if (sc(scores, idAt(ids, i)) == kth) swap(ids, m++, i);
  return m;
}

/** The shortest run of best ids whose mass reaches topP (TokenFilter.keepNucleus, the same steps). */
function keepNucleus(scores: usize, weights: usize, ids: usize, n: i32, topP: f64): i32 {
  let total = 0.0;
  for (let i = 0; i < n; i++) total += w(weights, idAt(ids, i));
  let lo = 0;
  let hi = n - 1;
  let above = 0.0;
  while (lo < hi) {
    const p = partition(scores, ids, lo, hi);
    let mass = above;
    for (let i = lo; i < p; i++) mass += w(weights, idAt(ids, i));
    if (mass / total >= topP) {
      hi = p - 1;
      continue;
    }
    mass += w(weights, idAt(ids, p));
    if (mass / total >= topP) return p + 1;
    above = mass;
    lo = p + 1;
  }
  return min(lo + 1, n);
}

function select(scores: usize, ids: usize, n: i32, k: i32): void {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const p = partition(scores, ids, lo, hi);
    if (p == k - 1) return;
    if (p > k - 1) hi = p - 1;
    else lo = p + 1;
  }
}

/** Lomuto partition around a median-of-three pivot (token-filter.ts's partition). */
function partition(scores: usize, ids: usize, lo: i32, hi: i32): i32 {
  const mid = <i32>(<u32>(lo + hi) >>> 1);
  if (before(scores, idAt(ids, mid), idAt(ids, lo))) swap(ids, mid, lo);
  if (before(scores, idAt(ids, hi), idAt(ids, lo))) swap(ids, hi, lo);
  if (before(scores, idAt(ids, mid), idAt(ids, hi))) swap(ids, mid, hi);
  const pivot = idAt(ids, hi);
  let p = lo;
  for (let i = lo; i < hi; i++) if (before(scores, idAt(ids, i), pivot)) swap(ids, i, p++);
  swap(ids, p, hi);
  return p;
}
