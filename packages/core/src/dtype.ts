// Element types. Weights stay in their stored dtype; f16/bf16 are held as raw 16-bit words
// (Uint16Array) and converted in registers by kernels. int8/int4 are reserved for quantized weights.

export type DType = 'f32' | 'f16' | 'bf16' | 'i8' | 'i4';
export type FloatDType = 'f32' | 'f16' | 'bf16';

export const DTYPE_BITS: Record<DType, number> = { f32: 32, f16: 16, bf16: 16, i8: 8, i4: 4 };

/** Bytes taken by `n` elements of `dtype` (int4 packs two per byte). */
export function byteSize(dtype: DType, n: number): number {
  return Math.ceil((n * DTYPE_BITS[dtype]) / 8);
}

/** The typed array that holds each float dtype's raw elements. */
export type FloatStorage = Float32Array | Uint16Array;

export function isFloatDType(d: string): d is FloatDType {
  return d === 'f32' || d === 'f16' || d === 'bf16';
}

export function allocFloat(dtype: FloatDType, n: number): FloatStorage {
  return dtype === 'f32' ? new Float32Array(n) : new Uint16Array(n);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bf16ToF32(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** Round-to-nearest-even, NaN kept quiet. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round-to-nearest-even conversion to IEEE half. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** Element `i` of a float storage as a number. */
export function readFloat(dtype: FloatDType, data: FloatStorage, i: number): number {
  if (dtype === 'f32') return data[i];
  return dtype === 'bf16' ? bf16ToF32(data[i]) : f16ToF32(data[i]);
}

/** A whole float storage converted to f32 (a copy unless it already is f32). */
export function toF32(dtype: FloatDType, data: FloatStorage): Float32Array {
  if (dtype === 'f32') return data as Float32Array;
  const out = new Float32Array(data.length);
  const conv = dtype === 'bf16' ? bf16ToF32 : f16ToF32;
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return out;
}

/** f32 values rounded into `dtype` storage. */
export function fromF32(dtype: FloatDType, data: Float32Array): FloatStorage {
  if (dtype === 'f32') return data;
  const out = new Uint16Array(data.length);
  const conv = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
  for (let i = 0; i < data.length; i++) out[i] = conv(data[i]);
  return out;
}
