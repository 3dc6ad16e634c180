// Row-wise and element-wise kernels: embedding gather, the norms, residual add, activations, rotary.
// Each splits its rows (or elements, or (row, head) pairs) evenly over the threads.
import { act4 } from './math';
import { alignedShareStart, argF, argI, argP, loadW1, loadW4, shareStart } from './common';

/**
 * args: 0 ids (i32 [rows], already checked), 1 rows, 2 table, 3 dtype, 4 dim, 5 offset, 6 scale (f32), 7 out,
 * 8 packed: the table is also a linear's weight, stored in panels of 8 rows (see linear.ts), 9 sharded: ids
 * outside [0, 10 table rows) (after the offset) give zero rows (a tensor-parallel vocab shard); else they
 * were checked to be inside.
 */
export function k_embedding(args: usize, tid: i32, nt: i32): void {
  const ids = argP(args, 0);
  const rows = argI(args, 1);
  const table = argP(args, 2);
  const dt = argI(args, 3);
  const dim = argI(args, 4);
  const offset = argI(args, 5);
  const scale = f32x4.splat(argF(args, 6));
  const out = argP(args, 7);
  const packed = argI(args, 8);
  const sharded = argI(args, 9);
  const vocab = argI(args, 10);
  const n8 = (dim + 7) >> 3;
  const hi = shareStart(rows, tid + 1, nt);
  for (let r = shareStart(rows, tid, nt); r < hi; r++) {
    const index = load<i32>(ids + (<usize>r << 2)) + offset;
    const o = out + (<usize>r * <usize>dim << 2);
    if (sharded && (index < 0 || index >= vocab)) {
      memory.fill(o, 0, <usize>dim << 2);
      continue;
    }
    if (packed) {
      // Group g of row `index`: 8 elements at ((panel · n8 + g) · 8 + row in panel) · 8.
      const base = ((index >> 3) * n8 * 8 + (index & 7)) * 8;
      for (let j = 0; j < dim; j += 4) {
        const v = f32x4.mul(loadW4(table, base + ((j >> 3) << 6) + (j & 7), dt), scale);
        storeUpTo4(o + (<usize>j << 2), v, dim - j);
      }
      continue;
    }
    const src = table + (dt == 0 ? <usize>index * <usize>dim << 2 : <usize>index * <usize>dim << 1);
    let j = 0;
    for (; j + 4 <= dim; j += 4) v128.store(o + (<usize>j << 2), f32x4.mul(loadW4(src, j, dt), scale));
    for (; j < dim; j++) store<f32>(o + (<usize>j << 2), loadW1(src, j, dt) * f32x4.extract_lane(scale, 0));
  }
}

@inline function storeUpTo4(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/** Σ x[i]² over n elements, in doubles (as the reference sums). */
@inline function sumSquares(x: usize, n: i32): f64 {
  let a = f64x2.splat(0);
  let b = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    const lo = f64x2.promote_low_f32x4(v);
    const hi = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
    a = f64x2.add(a, f64x2.mul(lo, lo));
    b = f64x2.add(b, f64x2.mul(hi, hi));
  }
  const s = f64x2.add(a, b);
  let sum = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
  for (; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    sum += v * v;
  }
  return sum;
}

/** Σ x[i] over n elements, in doubles. */
@inline function sum(x: usize, n: i32): f64 {
  let a = f64x2.splat(0);
  let b = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    a = f64x2.add(a, f64x2.promote_low_f32x4(v));
    b = f64x2.add(b, f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1)));
  }
  const s = f64x2.add(a, b);
  let total = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
  for (; i < n; i++) total += <f64>load<f32>(x + (<usize>i << 2));
  return total;
}

/** args: 0 x, 1 groups, 2 dim, 3 weight, 4 weight dtype, 5 eps (f32), 6 out. */
export function k_rms_norm(args: usize, tid: i32, nt: i32): void {
  const x = argP(args, 0);
  const groups = argI(args, 1);
  const dim = argI(args, 2);
  const w = argP(args, 3);
  const dt = argI(args, 4);
  const eps = <f64>argF(args, 5);
  const out = argP(args, 6);
  const hi = shareStart(groups, tid + 1, nt);
  for (let g = shareStart(groups, tid, nt); g < hi; g++) {
    const at = <usize>g * <usize>dim << 2;
    const inv = <f32>(1.0 / Math.sqrt(sumSquares(x + at, dim) / <f64>dim + eps));
    scaleRow(x + at, out + at, dim, inv, f32x4.splat(0), w, dt, 0, -1);
  }
}

/** args: 0 x, 1 groups, 2 dim, 3 weight, 4 weight dtype, 5 bias, 6 bias dtype, 7 eps (f32), 8 out. */
export function k_layer_norm(args: usize, tid: i32, nt: i32): void {
  const x = argP(args, 0);
  const groups = argI(args, 1);
  const dim = argI(args, 2);
  const w = argP(args, 3);
  const dt = argI(args, 4);
  const b = argP(args, 5);
  const bdt = argI(args, 6);
  const eps = <f64>argF(args, 7);
  const out = argP(args, 8);
  const hi = shareStart(groups, tid + 1, nt);
  for (let g = shareStart(groups, tid, nt); g < hi; g++) {
    const at = <usize>g * <usize>dim << 2;
    const mean = sum(x + at, dim) / <f64>dim;
    // Two passes (centre, then square), so a large common offset cannot swamp the variance.
    let sq: f64 = 0;
    for (let j = 0; j < dim; j++) {
      const d = <f64>load<f32>(x + at + (<usize>j << 2)) - mean;
      sq += d * d;
    }
    const inv = <f32>(1.0 / Math.sqrt(sq / <f64>dim + eps));
    scaleRow(x + at, out + at, dim, inv, f32x4.splat(<f32>mean), w, dt, b, bdt);
  }
}

/** out = (x − centre) · inv · w (+ b), w and b in their dtype. */
@inline function scaleRow(x: usize, out: usize, dim: i32, inv: f32, centre: v128, w: usize, dt: i32, b: usize, bdt: i32): void {
  const s = f32x4.splat(inv);
  let j = 0;
  for (; j + 4 <= dim; j += 4) {
    let v = f32x4.mul(f32x4.mul(f32x4.sub(v128.load(x + (<usize>j << 2)), centre), s), loadW4(w, j, dt));
    if (b) v = f32x4.add(v, loadW4(b, j, bdt));
    v128.store(out + (<usize>j << 2), v);
  }
  const c = f32x4.extract_lane(centre, 0);
  for (; j < dim; j++) {
    let v = (load<f32>(x + (<usize>j << 2)) - c) * inv * loadW1(w, j, dt);
    if (b) v += loadW1(b, j, bdt);
    store<f32>(out + (<usize>j << 2), v);
  }
}

/** args: 0 a, 1 b, 2 n, 3 out: out = a + b. */
export function k_add(args: usize, tid: i32, nt: i32): void {
  const a = argP(args, 0);
  const b = argP(args, 1);
  const n = argI(args, 2);
  const out = argP(args, 3);
  const hi = alignedShareStart(n, tid + 1, nt, 4);
  let i = alignedShareStart(n, tid, nt, 4);
  for (; i + 4 <= hi; i += 4) {
    const at = <usize>i << 2;
    v128.store(out + at, f32x4.add(v128.load(a + at), v128.load(b + at)));
  }
  for (; i < hi; i++) {
    const at = <usize>i << 2;
    store<f32>(out + at, load<f32>(a + at) + load<f32>(b + at));
  }
}

/** args: 0 fn, 1 x, 2 up (0: none), 3 n, 4 out: out = fn(x) (· up). */
export function k_activation(args: usize, tid: i32, nt: i32): void {
  const fn = argI(args, 0);
  const x = argP(args, 1);
  const up = argP(args, 2);
  const n = argI(args, 3);
  const out = argP(args, 4);
  const hi = alignedShareStart(n, tid + 1, nt, 4);
  let i = alignedShareStart(n, tid, nt, 4);
  for (; i < hi; i += 4) {
    const at = <usize>i << 2;
    const m = hi - i;
    let v = act4(fn, m >= 4 ? v128.load(x + at) : loadPartial(x + at, m));
    if (up) v = f32x4.mul(v, m >= 4 ? v128.load(up + at) : loadPartial(up + at, m));
    if (m >= 4) v128.store(out + at, v);
    else storePartial(out + at, v, m);
  }
}

@inline function loadPartial(p: usize, m: i32): v128 {
  let v = f32x4.splat(load<f32>(p));
  if (m > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (m > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

@inline function storePartial(p: usize, v: v128, m: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (m > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (m > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/**
 * args: 0 x, 1 rows, 2 heads, 3 headDim, 4 rotaryDim, 5 interleaved, 6 cos, 7 sin (f32 [rows, rotaryDim/2],
 * attentionScaling folded in), 8 out. Pairs (i, i + rotaryDim/2), or (2i, 2i + 1) when interleaved.
 */
export function k_rotary(args: usize, tid: i32, nt: i32): void {
  const x = argP(args, 0);
  const rows = argI(args, 1);
  const heads = argI(args, 2);
  const headDim = argI(args, 3);
  const half = argI(args, 4) >> 1;
  const interleaved = argI(args, 5);
  const cosT = argP(args, 6);
  const sinT = argP(args, 7);
  const out = argP(args, 8);
  const items = rows * heads;
  const hi = shareStart(items, tid + 1, nt);
  for (let it = shareStart(items, tid, nt); it < hi; it++) {
    const r = it / heads;
    const src = x + (<usize>it * <usize>headDim << 2);
    const dst = out + (<usize>it * <usize>headDim << 2);
    const c = cosT + (<usize>r * <usize>half << 2);
    const s = sinT + (<usize>r * <usize>half << 2);
    if (src != dst) memory.copy(dst, src, <usize>headDim << 2);
    let i = 0;
    if (!interleaved) {
      const p2 = <usize>half << 2;
      for (; i + 4 <= half; i += 4) {
        const at = <usize>i << 2;
        const x1 = v128.load(src + at);
        const x2 = v128.load(src + p2 + at);
        const cv = v128.load(c + at);
        const sv = v128.load(s + at);
        v128.store(dst + at, f32x4.sub(f32x4.mul(x1, cv), f32x4.mul(x2, sv)));
        v128.store(dst + p2 + at, f32x4.add(f32x4.mul(x2, cv), f32x4.mul(x1, sv)));
      }
    }
    for (; i < half; i++) {
      const a = <usize>(interleaved ? 2 * i : i) << 2;
      const b = <usize>(interleaved ? 2 * i + 1 : i + half) << 2;
      const x1 = load<f32>(src + a);
      const x2 = load<f32>(src + b);
      const cv = load<f32>(c + (<usize>i << 2));
      const sv = load<f32>(s + (<usize>i << 2));
      store<f32>(dst + a, x1 * cv - x2 * sv);
      store<f32>(dst + b, x2 * cv + x1 * sv);
    }
  }
}

