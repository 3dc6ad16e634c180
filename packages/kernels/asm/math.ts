// exp, erf and the activation functions, written out here because the standard library's Math.exp
// reads lookup tables from static data, which a kernel shared by threads must not have.
import { ACT_GELU, ACT_GELU_TANH, ACT_RELU, ACT_SILU } from './common';

/**
 * e^x for four f32 lanes (Cephes expf: x = n·ln2 + r, a degree-6 polynomial in r, 2^n built in the
 * exponent bits). x is clamped to [-86, 88], so results stay finite and normal: a lane below −86 gives
 * ~4e-38 instead of a smaller number, which no softmax or sigmoid here can tell apart from 0.
 */
@inline export function exp4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, f32x4.splat(-86.0)), f32x4.splat(88.0));
  const n = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  const y = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1.0));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(y, scale);
}

// fdlibm's e^x in double precision (< 1 ulp), without tables: V8's Math.exp bit for bit (test/cpu-math.test.ts).
const LN2_HI: f64 = 6.93147180369123816490e-01;
const LN2_LO: f64 = 1.90821492927058770002e-10;
const INV_LN2: f64 = 1.44269504088896338700e+00;
const P1: f64 = 1.66666666666666019037e-01;
const P2: f64 = -2.77777777770155933842e-03;
const P3: f64 = 6.61375632143793436117e-05;
const P4: f64 = -1.65339022054652515390e-06;
const P5: f64 = 4.13813679705723846039e-08;

export function expd(x: f64): f64 {
  if (x != x) return x;
  if (x == 1.0) return 2.718281828459045; // V8 returns Math.E here, 1 ulp below fdlibm's value
  if (x > 709.782712893383973096) return Infinity;
  if (x < -745.13321910194110842) return 0;
  const k = nearest(x * INV_LN2);
  const hi = x - k * LN2_HI;
  const lo = k * LN2_LO;
  const r = hi - lo;
  const t = r * r;
  const c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
  const y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
  return scale2(y, <i32>k);
}

/**
 * expd on two lanes at once, bit for bit: the same IEEE operations in the same order, lane by lane (wasm has
 * no implicit contraction). Where a lane leaves the plain path (NaN, out of range, 2^k not a normal double
 * (|x| > 693), or x = 1), both lanes go through expd. test/cpu-math.test.ts holds both to Math.exp.
 */
export function expd2(x: v128): v128 {
  const x0 = f64x2.extract_lane(x, 0);
  const x1 = f64x2.extract_lane(x, 1);
  // NaN fails the range test too; x = 1 is expd's special case.
  if (!(abs(x0) <= 693.0 && abs(x1) <= 693.0) || x0 == 1.0 || x1 == 1.0) return f64x2.replace_lane(f64x2.splat(expd(x0)), 1, expd(x1));
  const k = f64x2.nearest(f64x2.mul(x, f64x2.splat(INV_LN2)));
  const hi = f64x2.sub(x, f64x2.mul(k, f64x2.splat(LN2_HI)));
  const lo = f64x2.mul(k, f64x2.splat(LN2_LO));
  const r = f64x2.sub(hi, lo);
  const t = f64x2.mul(r, r);
  let p = f64x2.add(f64x2.splat(P4), f64x2.mul(t, f64x2.splat(P5)));
  p = f64x2.add(f64x2.splat(P3), f64x2.mul(t, p));
  p = f64x2.add(f64x2.splat(P2), f64x2.mul(t, p));
  p = f64x2.add(f64x2.splat(P1), f64x2.mul(t, p));
  const c = f64x2.sub(r, f64x2.mul(t, p));
  const q = f64x2.div(f64x2.mul(r, c), f64x2.sub(f64x2.splat(2.0), c));
  const y = f64x2.sub(f64x2.splat(1.0), f64x2.sub(f64x2.sub(lo, q), hi));
  // 2^k: k (integral, |k| ≤ 1000) into the exponent field, as pow2 does.
  const e = i64x2.shl(i64x2.add(i64x2.extend_low_i32x4_s(i32x4.trunc_sat_f64x2_s_zero(k)), i64x2.splat(1023)), 52);
  return f64x2.mul(y, e);
}

/** y · 2^k for k in [-1080, 1030], in two steps where 2^k alone is not a normal double. */
@inline function scale2(y: f64, k: i32): f64 {
  if (k > 1000) return y * pow2(1000) * pow2(k - 1000);
  if (k < -1000) return y * pow2(-1000) * pow2(k + 1000);
  return y * pow2(k);
}

@inline function pow2(k: i32): f64 {
  return reinterpret<f64>(<i64>(k + 1023) << 52);
}

// erf: W. J. Cody's rational approximations, as in the reference backend's erf.ts (accurate to ~1e-16).
const A0: f64 = 3.16112374387056560e0, A1: f64 = 1.13864154151050156e2, A2: f64 = 3.77485237685302021e2, A3: f64 = 3.20937758913846947e3, A4: f64 = 1.85777706184603153e-1;
const B0: f64 = 2.36012909523441209e1, B1: f64 = 2.44024637934444173e2, B2: f64 = 1.28261652607737228e3, B3: f64 = 2.84423683343917062e3;
const C0: f64 = 5.64188496988670089e-1, C1: f64 = 8.88314979438837594e0, C2: f64 = 6.61191906371416295e1, C3: f64 = 2.98635138197400131e2;
const C4: f64 = 8.81952221241769090e2, C5: f64 = 1.71204761263407058e3, C6: f64 = 2.05107837782607147e3, C7: f64 = 1.23033935479799725e3, C8: f64 = 2.15311535474403846e-8;
const D0: f64 = 1.57449261107098347e1, D1: f64 = 1.17693950891312499e2, D2: f64 = 5.37181101862009858e2, D3: f64 = 1.62138957456669019e3;
const D4: f64 = 3.29079923573345963e3, D5: f64 = 4.36261909014324716e3, D6: f64 = 3.43936767414372164e3, D7: f64 = 1.23033935480374942e3;
const Q0P: f64 = 3.05326634961232344e-1, Q1P: f64 = 3.60344899949804439e-1, Q2P: f64 = 1.25781726111229246e-1, Q3P: f64 = 1.60837851487422766e-2, Q4P: f64 = 6.58749161529837803e-4, Q5P: f64 = 1.63153871373020978e-2;
const Q0: f64 = 2.56852019228982242e0, Q1: f64 = 1.87295284992346047e0, Q2: f64 = 5.27905102951428412e-1, Q3: f64 = 6.05183413124413191e-2, Q4: f64 = 2.33520497626869185e-3;
const RSQRT_PI: f64 = 0.56418958354775628695;

export function erf(x: f64): f64 {
  const y = abs(x);
  if (y <= 0.46875) {
    const z = y * y;
    let num = A4 * z;
    let den = z;
    num = (num + A0) * z; den = (den + B0) * z;
    num = (num + A1) * z; den = (den + B1) * z;
    num = (num + A2) * z; den = (den + B2) * z;
    return (x * (num + A3)) / (den + B3);
  }
  if (y != y) return y;
  const c = erfcAbove(y);
  return x < 0 ? c - 1.0 : 1.0 - c;
}

function erfcAbove(y: f64): f64 {
  let r: f64;
  if (y <= 4.0) {
    let num = C8 * y;
    let den = y;
    num = (num + C0) * y; den = (den + D0) * y;
    num = (num + C1) * y; den = (den + D1) * y;
    num = (num + C2) * y; den = (den + D2) * y;
    num = (num + C3) * y; den = (den + D3) * y;
    num = (num + C4) * y; den = (den + D4) * y;
    num = (num + C5) * y; den = (den + D5) * y;
    num = (num + C6) * y; den = (den + D6) * y;
    r = (num + C7) / (den + D7);
  } else {
    if (y >= 6.0) return 0;
    const z = 1.0 / (y * y);
    let num = Q5P * z;
    let den = z;
    num = (num + Q0P) * z; den = (den + Q0) * z;
    num = (num + Q1P) * z; den = (den + Q1) * z;
    num = (num + Q2P) * z; den = (den + Q2) * z;
    num = (num + Q3P) * z; den = (den + Q3) * z;
    r = (RSQRT_PI - (z * (num + Q4P)) / (den + Q4)) / y;
  }
  const t = trunc(y * 16.0) / 16.0;
  return expd(-t * t) * expd(-(y - t) * (y + t)) * r;
}

/** Exact-erf GELU of one value, in double precision like the reference. */
@inline export function geluExact(x: f32): f32 {
  const d = <f64>x;
  return <f32>(0.5 * d * (1.0 + erf(d * 0.70710678118654752440)));
}

/** fn(x) lane-wise. */
@inline export function act4(fn: i32, x: v128): v128 {
  if (fn == ACT_RELU) return f32x4.max(x, f32x4.splat(0));
  if (fn == ACT_SILU) return f32x4.div(x, f32x4.add(f32x4.splat(1), exp4(f32x4.neg(x))));
  if (fn == ACT_GELU_TANH) {
    // 0.5·x·(1 + tanh(u)), tanh(u) = 1 − 2 / (e^{2u} + 1)
    const x3 = f32x4.mul(f32x4.mul(x, x), x);
    const u = f32x4.mul(f32x4.splat(0.7978845608028654), f32x4.add(x, f32x4.mul(f32x4.splat(0.044715), x3)));
    const e = exp4(f32x4.add(u, u));
    const th = f32x4.sub(f32x4.splat(1), f32x4.div(f32x4.splat(2), f32x4.add(e, f32x4.splat(1))));
    return f32x4.mul(f32x4.mul(f32x4.splat(0.5), x), f32x4.add(f32x4.splat(1), th));
  }
  if (fn == ACT_GELU) {
    let r = f32x4.splat(geluExact(f32x4.extract_lane(x, 0)));
    r = f32x4.replace_lane(r, 1, geluExact(f32x4.extract_lane(x, 1)));
    r = f32x4.replace_lane(r, 2, geluExact(f32x4.extract_lane(x, 2)));
    return f32x4.replace_lane(r, 3, geluExact(f32x4.extract_lane(x, 3)));
  }
  return x;
}
