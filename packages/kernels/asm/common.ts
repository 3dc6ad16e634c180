// Helpers every kernel shares: argument access, work splitting and weight-element conversion.
// Kernels run on every thread of the pool over one shared memory, so nothing here may keep state in
// memory of its own: no static data, no allocations; all memory comes in through pointers.

/** Weight dtype codes (the JS side writes these into kernel arguments). */
export const DT_F32: i32 = 0;
export const DT_F16: i32 = 1;
export const DT_BF16: i32 = 2;

/** Activation function codes. */
export const ACT_NONE: i32 = 0;
export const ACT_RELU: i32 = 1;
export const ACT_SILU: i32 = 2;
export const ACT_GELU: i32 = 3;
export const ACT_GELU_TANH: i32 = 4;

/** i32 argument `i` of an argument block. */
@inline export function argI(args: usize, i: i32): i32 {
  return load<i32>(args + (<usize>i << 2));
}

/** Pointer argument `i` (a byte offset into the shared memory). */
@inline export function argP(args: usize, i: i32): usize {
  return <usize>load<u32>(args + (<usize>i << 2));
}

@inline export function argF(args: usize, i: i32): f32 {
  return load<f32>(args + (<usize>i << 2));
}

/** First item of thread `tid`'s share of `n` items split evenly over `nt` threads. */
@inline export function shareStart(n: i32, tid: i32, nt: i32): i32 {
  return <i32>((<i64>n * <i64>tid) / <i64>nt);
}

/** Like shareStart, with every boundary but the last a multiple of `align`. */
@inline export function alignedShareStart(n: i32, tid: i32, nt: i32, align: i32): i32 {
  if (tid >= nt) return n;
  const s = <i32>((<i64>n * <i64>tid) / <i64>nt);
  return min(n, (s + align - 1) / align * align);
}

// ---------------------------------------------------------------------------------------------------
// f16 / bf16 → f32, exactly.

/**
 * Four IEEE half values (one per 32-bit lane, in the low 16 bits, high bits zero) as f32x4, exactly:
 * the exponent and mantissa shifted into f32 position and multiplied by 2^112 (re-biasing the exponent,
 * which also turns half subnormals into the right f32 normals); inf/NaN get the f32 all-ones exponent.
 */
@inline export function f16LanesToF32(h: v128): v128 {
  const em = v128.and(h, i32x4.splat(0x7fff));
  const sign = i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16);
  let f = f32x4.mul(i32x4.shl(em, 13), f32x4.splat(5.192296858534828e33)); // 2^112
  f = v128.or(f, v128.and(i32x4.gt_s(em, i32x4.splat(0x7bff)), i32x4.splat(0x7f800000)));
  return v128.or(f, sign);
}

/** bf16 words in the low 16 bits of each lane as f32x4. */
@inline export function bf16LanesToF32(h: v128): v128 {
  return i32x4.shl(h, 16);
}

/** Weight elements [i, i + 4) of a vector stored in `dt`, as f32x4 (natural order). */
@inline export function loadW4(p: usize, i: i32, dt: i32): v128 {
  if (dt == DT_F32) return v128.load(p + (<usize>i << 2));
  const h = i32x4.extend_low_i16x8_u(v128.load64_zero(p + (<usize>i << 1)));
  return dt == DT_BF16 ? bf16LanesToF32(h) : f16LanesToF32(h);
}

/** Weight element i of a vector stored in `dt`. */
@inline export function loadW1(p: usize, i: i32, dt: i32): f32 {
  if (dt == DT_F32) return load<f32>(p + (<usize>i << 2));
  const h = i32x4.splat(<i32>load<u16>(p + (<usize>i << 1)));
  return f32x4.extract_lane(dt == DT_BF16 ? bf16LanesToF32(h) : f16LanesToF32(h), 0);
}

/** Sum of the four lanes in a fixed order: (a0 + a2) + (a1 + a3). */
@inline export function hsum(a: v128): f32 {
  const s = f32x4.add(a, i32x4.shuffle(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}
