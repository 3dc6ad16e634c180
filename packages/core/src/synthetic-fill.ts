// The generator behind synthetic weights: element i of a tensor is a pure function of (tensor key, i),
// so any slice is generated alone and equals the same slice of the whole tensor. One 32-bit counter
// hash (murmur3's finalizer over word index i >> 1) gives the 16-bit uniforms of two neighbouring
// elements; a 65536-entry table of normal quantiles turns each into a value already encoded in the
// tensor's dtype. For 16-bit dtypes the fast path stores both elements as one 32-bit word, so a fill
// costs one hash, two table loads and one store per two elements (well over 1 GB/s on one thread).
import { f32ToBf16, f32ToF16, type FloatDType, type FloatStorage } from './dtype.js';

/** What a tensor's values centre on: matrices and biases near 0, norm weights near 1. */
export type SyntheticCenter = 0 | 1;

const tables = new Map<string, FloatStorage>();

/** Encoded values of N(center, std²) at the 65536 midpoint quantiles, cached per (dtype, std, center). */
export function quantileTable(dtype: FloatDType, std: number, center: SyntheticCenter): FloatStorage {
  const key = `${dtype}:${std}:${center}`;
  let t = tables.get(key);
  if (t) return t;
  t = dtype === 'f32' ? new Float32Array(65536) : new Uint16Array(65536);
  const encode = dtype === 'f16' ? f32ToF16 : dtype === 'bf16' ? f32ToBf16 : (x: number) => x;
  for (let u = 0; u < 65536; u++) t[u] = encode(center + std * inverseNormal((u + 0.5) / 65536));
  tables.set(key, t);
  return t;
}

/** A tensor's 32-bit key from the model seed and the tensor's name (FNV-1a, then mixed). */
export function tensorKey(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ Math.imul(seed | 0, 0x27d4eb2d);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return mix(h);
}

function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The 32-bit word that holds the uniforms of elements 2w (low half) and 2w + 1 (high half). */
function word(key: number, w: number): number {
  let h = (Math.imul(w, 0x9e3779b1) + key) | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * Writes elements [flat, flat + count) of the tensor `key` into dst[at ...], through `table` (same
 * storage type as dst). `flat` may exceed 2³¹ (tensors up to 2³³ elements).
 */
export function fillSynthetic(dst: FloatStorage, at: number, key: number, table: FloatStorage, flat: number, count: number): void {
  if (count <= 0) return;
  if (flat % 2 === 1) {
    dst[at++] = table[word(key, (flat - 1) / 2) >>> 16];
    flat++;
    count--;
  }
  const words = Math.floor(count / 2);
  const w0 = (flat / 2) | 0; // the word counter wraps at 2³² like the hash's arithmetic
  if (dst instanceof Uint16Array && (dst.byteOffset + 2 * at) % 4 === 0) fillWords16(new Uint32Array(dst.buffer, dst.byteOffset + 2 * at, words), key, table as Uint16Array, w0);
  else fillPairs(dst, at, key, table, w0, words);
  if (count % 2 === 1) dst[at + 2 * words] = table[word(key, w0 + words) & 0xffff];
}

function fillWords16(out: Uint32Array, key: number, table: Uint16Array, w0: number): void {
  const n = out.length;
  for (let i = 0; i < n; i++) {
    const h = word(key, (w0 + i) | 0);
    out[i] = table[h & 0xffff] | (table[h >>> 16] << 16);
  }
}

function fillPairs(dst: FloatStorage, at: number, key: number, table: FloatStorage, w0: number, words: number): void {
  for (let i = 0; i < words; i++) {
    const h = word(key, (w0 + i) | 0);
    dst[at + 2 * i] = table[h & 0xffff];
    dst[at + 2 * i + 1] = table[h >>> 16];
  }
}

/** Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation (relative error < 1.2e-9). */
export function inverseNormal(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number) => (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}
