// The paged KV cache: writing this step's k/v rows at their slots, and causal attention of each query
// row over its sequence's cached positions, read through the sequence's block table.
import { argF, argI, argP, shareStart } from './common';
import { exp4 } from './math';

/** args: 0 k, 1 v (f32 [rows, width]), 2 rows, 3 width, 4 slots (i32 [rows]), 5 K cache, 6 V cache (of the layer). */
export function k_kv_write(args: usize, tid: i32, nt: i32): void {
  const k = argP(args, 0);
  const v = argP(args, 1);
  const rows = argI(args, 2);
  const bytes = <usize>argI(args, 3) << 2;
  const slots = argP(args, 4);
  const kc = argP(args, 5);
  const vc = argP(args, 6);
  const hi = shareStart(rows, tid + 1, nt);
  for (let r = shareStart(rows, tid, nt); r < hi; r++) {
    const slot = <usize>load<i32>(slots + (<usize>r << 2));
    memory.copy(kc + slot * bytes, k + <usize>r * bytes, bytes);
    memory.copy(vc + slot * bytes, v + <usize>r * bytes, bytes);
  }
}

/** Query heads of one kv head processed together: K and V rows are read once for all of them. */
const HC: i32 = 4;

/**
 * args: 0 q (f32 [rows, heads*headDim]), 1 out (same shape), 2 rows, 3 heads, 4 kvHeads, 5 headDim,
 * 6 scale (f32), 7 sliding window (0: none), 8 K cache, 9 V cache (f32 [slots, kvHeads*headDim]),
 * 10 sequence of each row (i32 [rows]), 11 sequences (i32 [n, 4]: queryStart, queryLength, contextLength,
 * offset of the block table in 12), 12 block tables (i32), 13 blockSize, 14 scratch, 15 scratch bytes per
 * thread (≥ (HC + 1) · 4 · the longest context).
 * Threads split the items (row, kv head, chunk of up to HC of its query heads); each item: scores of its
 * heads against the cached keys, softmax with the max subtracted, then the weighted sum of the values.
 */
export function k_attention(args: usize, tid: i32, nt: i32): void {
  const q = argP(args, 0);
  const out = argP(args, 1);
  const rows = argI(args, 2);
  const heads = argI(args, 3);
  const kvHeads = argI(args, 4);
  const hd = argI(args, 5);
  const scale = argF(args, 6);
  const window = argI(args, 7);
  const kc = argP(args, 8);
  const vc = argP(args, 9);
  const rowSeq = argP(args, 10);
  const seqs = argP(args, 11);
  const tables = argP(args, 12);
  const bs = argI(args, 13);
  const scratchBytes = argP(args, 15);
  const scratch = argP(args, 14) + <usize>tid * scratchBytes;
  const stride = (scratchBytes / <usize>(HC + 1)) & ~15; // bytes per head's scores, and for the row offsets
  const offsets = scratch + <usize>HC * stride; // byte offset of each cached position's row
  const group = heads / kvHeads;
  const chunks = (group + HC - 1) / HC;
  const kvBytes = <usize>(kvHeads * hd) << 2;
  const items = rows * kvHeads * chunks;
  const hi = shareStart(items, tid + 1, nt);
  for (let it = shareStart(items, tid, nt); it < hi; it++) {
    const row = it / (kvHeads * chunks);
    const kvh = (it / chunks) % kvHeads;
    const h0 = kvh * group + (it % chunks) * HC;
    const hn = min(HC, kvh * group + group - h0);
    const seq = seqs + (<usize>load<i32>(rowSeq + (<usize>row << 2)) << 4);
    const qLen = load<i32>(seq, 4);
    const ctx = load<i32>(seq, 8);
    const table = tables + (<usize>load<i32>(seq, 12) << 2);
    const p = ctx - qLen + (row - load<i32>(seq));
    const lo = window > 0 ? max(0, p - window + 1) : 0;
    const n = p - lo + 1;
    const kvOff = <usize>(kvh * hd) << 2;
    // Row offsets of positions lo..p, walking the block table a block at a time.
    let j = lo;
    while (j <= p) {
      const block = j / bs;
      const first = block * bs;
      const end = min(p + 1, first + bs);
      const base = <usize>load<i32>(table + (<usize>block << 2)) * <usize>bs;
      for (; j < end; j++) store<u32>(offsets + (<usize>(j - lo) << 2), <u32>((base + <usize>(j - first)) * kvBytes + kvOff));
    }
    const qa = q + (<usize>(row * heads + h0) * <usize>hd << 2);
    const qs = <usize>hd << 2;
    const q1 = hn > 1 ? qa + qs : qa;
    const q2 = hn > 2 ? qa + 2 * qs : qa;
    const q3 = hn > 3 ? qa + 3 * qs : qa;
    const m = scores4(qa, q1, q2, q3, kc, offsets, n, hd, scale, scratch, stride);
    const oa = out + (<usize>(row * heads + h0) * <usize>hd << 2);
    for (let g = 0; g < hn; g++) {
      const sg = scratch + <usize>g * stride;
      const total = softmaxInPlace(sg, n, g == 0 ? f32x4.extract_lane(m, 0) : g == 1 ? f32x4.extract_lane(m, 1) : g == 2 ? f32x4.extract_lane(m, 2) : f32x4.extract_lane(m, 3));
      store<f32>(sg + <usize>(n << 2), <f32>(1.0 / total)); // 1 / Σ, read by values4
    }
    values4(vc, offsets, n, hd, scratch, stride, hn, oa, qs);
  }
}

/** scores[g][j] = scale · q_g · K[j] for the HC heads (q1..q3 may repeat q0); returns each head's max. */
function scores4(q0: usize, q1: usize, q2: usize, q3: usize, kc: usize, offsets: usize, n: i32, hd: i32, scale: f32, s: usize, stride: usize): v128 {
  let best = f32x4.splat(-Infinity);
  for (let j = 0; j < n; j++) {
    const k = kc + <usize>load<u32>(offsets + (<usize>j << 2));
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let d = 0;
    for (; d + 4 <= hd; d += 4) {
      const at = <usize>d << 2;
      const kv = v128.load(k + at);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(q0 + at), kv));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(q1 + at), kv));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(q2 + at), kv));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(q3 + at), kv));
    }
    // The four lane sums as one vector: [Σa0, Σa1, Σa2, Σa3].
    const t01 = f32x4.add(v128.shuffle<f32>(a0, a1, 0, 1, 4, 5), v128.shuffle<f32>(a0, a1, 2, 3, 6, 7));
    const t23 = f32x4.add(v128.shuffle<f32>(a2, a3, 0, 1, 4, 5), v128.shuffle<f32>(a2, a3, 2, 3, 6, 7));
    let dots = f32x4.add(v128.shuffle<f32>(t01, t23, 0, 2, 4, 6), v128.shuffle<f32>(t01, t23, 1, 3, 5, 7));
    for (; d < hd; d++) {
      const kd = f32x4.splat(load<f32>(k + (<usize>d << 2)));
      let qd = f32x4.splat(load<f32>(q0 + (<usize>d << 2)));
      qd = f32x4.replace_lane(qd, 1, load<f32>(q1 + (<usize>d << 2)));
      qd = f32x4.replace_lane(qd, 2, load<f32>(q2 + (<usize>d << 2)));
      qd = f32x4.replace_lane(qd, 3, load<f32>(q3 + (<usize>d << 2)));
      dots = f32x4.add(dots, f32x4.mul(qd, kd));
    }
    dots = f32x4.mul(dots, f32x4.splat(scale));
    best = f32x4.max(best, dots);
    const at = <usize>j << 2;
    store<f32>(s + at, f32x4.extract_lane(dots, 0));
    store<f32>(s + stride + at, f32x4.extract_lane(dots, 1));
    store<f32>(s + 2 * stride + at, f32x4.extract_lane(dots, 2));
    store<f32>(s + 3 * stride + at, f32x4.extract_lane(dots, 3));
  }
  return best;
}

/**
 * out_g = Σ_j w_g[j] · V[j] / Σ_j w_g[j] for heads g < hn (weights in s + g·stride, 1/Σ after them), 8
 * dims at a time so each V row chunk is loaded once for all heads.
 */
function values4(vc: usize, offsets: usize, n: i32, hd: i32, s: usize, stride: usize, hn: i32, out: usize, os: usize): void {
  const s1 = hn > 1 ? s + stride : s;
  const s2 = hn > 2 ? s + 2 * stride : s;
  const s3 = hn > 3 ? s + 3 * stride : s;
  let d = 0;
  for (; d + 8 <= hd; d += 8) {
    let a0 = f32x4.splat(0), b0 = f32x4.splat(0), a1 = f32x4.splat(0), b1 = f32x4.splat(0);
    let a2 = f32x4.splat(0), b2 = f32x4.splat(0), a3 = f32x4.splat(0), b3 = f32x4.splat(0);
    const at = <usize>d << 2;
    for (let j = 0; j < n; j++) {
      const v = vc + <usize>load<u32>(offsets + (<usize>j << 2)) + at;
      const v0 = v128.load(v);
      const v1 = v128.load(v, 16);
      const jj = <usize>j << 2;
      const w0 = v128.load32_splat(s + jj);
      const w1 = v128.load32_splat(s1 + jj);
      const w2 = v128.load32_splat(s2 + jj);
      const w3 = v128.load32_splat(s3 + jj);
      a0 = f32x4.add(a0, f32x4.mul(w0, v0));
      b0 = f32x4.add(b0, f32x4.mul(w0, v1));
      a1 = f32x4.add(a1, f32x4.mul(w1, v0));
      b1 = f32x4.add(b1, f32x4.mul(w1, v1));
      a2 = f32x4.add(a2, f32x4.mul(w2, v0));
      b2 = f32x4.add(b2, f32x4.mul(w2, v1));
      a3 = f32x4.add(a3, f32x4.mul(w3, v0));
      b3 = f32x4.add(b3, f32x4.mul(w3, v1));
    }
    const tail = <usize>n << 2;
    storeScaled(out + at, a0, b0, v128.load32_splat(s + tail));
    if (hn > 1) storeScaled(out + os + at, a1, b1, v128.load32_splat(s1 + tail));
    if (hn > 2) storeScaled(out + 2 * os + at, a2, b2, v128.load32_splat(s2 + tail));
    if (hn > 3) storeScaled(out + 3 * os + at, a3, b3, v128.load32_splat(s3 + tail));
  }
  // Dims past the last multiple of 8, one at a time per head.
  for (; d < hd; d++) {
    for (let g = 0; g < hn; g++) {
      const sg = s + <usize>g * stride;
      let acc: f32 = 0;
      for (let j = 0; j < n; j++) acc += load<f32>(sg + (<usize>j << 2)) * load<f32>(vc + <usize>load<u32>(offsets + (<usize>j << 2)) + (<usize>d << 2));
      store<f32>(out + <usize>g * os + (<usize>d << 2), acc * load<f32>(sg + (<usize>n << 2)));
    }
  }
}

@inline function storeScaled(p: usize, a: v128, b: v128, inv: v128): void {
  v128.store(p, f32x4.mul(a, inv));
  v128.store(p, f32x4.mul(b, inv), 16);
}

/** s[i] = e^(s[i] − max) over n scores; returns their sum (in doubles). */
function softmaxInPlace(s: usize, n: i32, max: f32): f64 {
  const m = f32x4.splat(max);
  let total: f64 = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const e = exp4(f32x4.sub(v128.load(s + (<usize>i << 2)), m));
    v128.store(s + (<usize>i << 2), e);
    total += <f64>f32x4.extract_lane(e, 0) + <f64>f32x4.extract_lane(e, 1) + <f64>f32x4.extract_lane(e, 2) + <f64>f32x4.extract_lane(e, 3);
  }
  for (; i < n; i++) {
    const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(s + (<usize>i << 2)) - max)), 0);
    store<f32>(s + (<usize>i << 2), e);
    total += <f64>e;
  }
  return total;
}
