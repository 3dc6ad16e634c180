// Paged-KV causal attention with GQA and sliding windows, split across the context like flash-decoding.
//   - attn_decode: a step of one token per sequence (decode). Each block takes one (row, head, split of
//     the context); lanes in groups of LANES read a cached position's head with 16-byte loads, every group
//     keeps an online softmax, and the splits are merged in the same launch: by the first block of their
//     thread-block cluster through shared memory (cluster.cuh), or, past one cluster or without clusters, by
//     the last block of a (row, head) to finish (a counter in global memory). A decode layer's attention is
//     one launch. It also does what a separate kernel did before it (rope_kv / kv_write): it rotates q, and
//     the split that holds the row's new position rotates the step's k, uses it and v (from registers) for
//     that position and (one block per KV head) writes both into the cache; the values it stores and uses
//     are those rope_kv would store (the same rope.cuh code and roundings). It can ask L2 for the next GEMV's
//     weights (l2_prefetch; off by default).
//     The split count is fixed per launch and each split's range comes from the context length on the
//     device, so a captured CUDA graph replays for any context. Splits past the context (a short context
//     over many splits: a tp rank's few heads get many) leave at once and the merge reads only the splits
//     that hold positions: it had read every split's partial one L2 trip after another.
//   - attention_partial + attention_reduce: the general path for any row (prompt rows too) and any head
//     size: per (row, head, chunk) a softmax max, a sum and an unnormalized output, then a merge.
//   - flash.cu holds the tensor-core kernel for prompt rows in 16-bit modes.
// The cache holds the activation type A, or with the opt-in fp8 cache e4m3 (fp8.cuh): the `_e4m3` entry
// points read it (attn_decode and attention_partial; flash.cu reads 16-bit caches only).
//
// Sequence metadata, uploaded per step as int32:
//   rowSeq [rows]: the sequence of each row;
//   seqInfo [sequences, 4]: queryStart, queryLength, contextLength, offset of its block table in blockTables;
//   blockTables [Σ blocks]: physical block of each logical block, sequence after sequence.
#include "cluster.cuh"
#include "rope.cuh"

#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_MAX_HEAD_DIM 256 // supports() refuses larger heads
#define ATT_PER_LANE (ATT_MAX_HEAD_DIM / 32)

// partial [rows, heads, chunks, headDim + 2]: (max, sum, acc[headDim]) of each chunk, max = -inf when the
// chunk holds no position of the row. q [rows, heads*headDim]. window 0: none.
// grid (chunks, heads, rows), block (ATT_THREADS): each warp takes every ATT_WARPS-th position of the chunk
// and keeps an online softmax; the warps merge through shared memory.
template <typename A, typename C>
__device__ void attention_partial(float *partial, const A *q, const C *kCache, const C *vCache, const int *rowSeq, const int *seqInfo,
                                  const int *blockTables, int headDim, int kvHeads, int blockSize, int window, float scale, int chunk) {
  __shared__ float sMax[ATT_WARPS], sSum[ATT_WARPS], sAcc[ATT_WARPS][ATT_MAX_HEAD_DIM];
  const int c = blockIdx.x, h = blockIdx.y, r = blockIdx.z, chunks = gridDim.x, heads = gridDim.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  grid_dep_wait();
  grid_dep_launch();
  const int *info = seqInfo + 4 * rowSeq[r];
  const int p = info[2] - info[1] + (r - info[0]); // this row's position
  const int lo = window > 0 ? max(0, p - window + 1) : 0;
  const int begin = lo + c * chunk, end = min(p + 1, begin + chunk);
  const int *table = blockTables + info[3];
  const int kvWidth = kvHeads * headDim;
  const int kvOff = (h / (heads / kvHeads)) * headDim;

  float qr[ATT_PER_LANE], acc[ATT_PER_LANE];
  const A *qRow = q + ((i64)r * heads + h) * headDim;
#pragma unroll
  for (int t = 0; t < ATT_PER_LANE; t++) {
    const int d = lane + 32 * t;
    qr[t] = d < headDim ? to_f32(qRow[d]) : 0.f;
    acc[t] = 0.f;
  }
  float m = NEG_INF, l = 0.f;
  for (int j = begin + warp; j < end; j += ATT_WARPS) {
    const i64 slot = (i64)table[j / blockSize] * blockSize + j % blockSize;
    const C *kr = kCache + slot * kvWidth + kvOff;
    const C *vr = vCache + slot * kvWidth + kvOff;
    float dot = 0.f;
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) {
      const int d = lane + 32 * t;
      if (d < headDim) dot += qr[t] * to_f32(kr[d]);
    }
    const float s = warp_sum(dot) * scale;
    const float mNew = fmaxf(m, s);
    const float corr = expf(m - mNew); // 0 on the first position (m = -inf)
    const float e = expf(s - mNew);
    l = l * corr + e;
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) {
      const int d = lane + 32 * t;
      if (d < headDim) acc[t] = acc[t] * corr + e * to_f32(vr[d]);
    }
    m = mNew;
  }
  if (lane == 0) {
    sMax[warp] = m;
    sSum[warp] = l;
  }
#pragma unroll
  for (int t = 0; t < ATT_PER_LANE; t++) {
    const int d = lane + 32 * t;
    if (d < headDim) sAcc[warp][d] = acc[t];
  }
  __syncthreads();
  float M = NEG_INF;
  for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, sMax[w]);
  float *out = partial + (((i64)r * heads + h) * chunks + c) * (headDim + 2);
  if (threadIdx.x == 0) {
    float L = 0.f;
    for (int w = 0; w < ATT_WARPS; w++)
      if (sMax[w] != NEG_INF) L += sSum[w] * expf(sMax[w] - M);
    out[0] = M;
    out[1] = L;
  }
  for (int d = threadIdx.x; d < headDim; d += ATT_THREADS) {
    float a = 0.f;
    for (int w = 0; w < ATT_WARPS; w++)
      if (sMax[w] != NEG_INF) a += sAcc[w][d] * expf(sMax[w] - M);
    out[2 + d] = a;
  }
}

// out [rows, heads*headDim] from partial [rows, heads, chunks, headDim + 2]. Every row's range is non-empty,
// so chunk 0 always holds a position and the merged max is finite.
// grid (heads, rows), block (multiple of 32).
template <typename A> __device__ void attention_reduce(A *out, const float *partial, int headDim, int chunks) {
  const int h = blockIdx.x, r = blockIdx.y, heads = gridDim.x;
  grid_dep_wait();
  grid_dep_launch();
  const int stride = headDim + 2;
  const float *P = partial + ((i64)r * heads + h) * chunks * stride;
  float M = NEG_INF;
  for (int c = 0; c < chunks; c++) M = fmaxf(M, P[c * stride]);
  float L = 0.f;
  for (int c = 0; c < chunks; c++)
    if (P[c * stride] != NEG_INF) L += P[c * stride + 1] * expf(P[c * stride] - M);
  const float inv = 1.f / L;
  A *o = out + ((i64)r * heads + h) * headDim;
  for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
    float a = 0.f;
    for (int c = 0; c < chunks; c++)
      if (P[c * stride] != NEG_INF) a += P[c * stride + 2 + d] * expf(P[c * stride] - M);
    o[d] = from_f32<A>(a * inv);
  }
}

#define ATT_PARAMS(S, A)                                                                                                             \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                                                         \
      attention_partial_##S(float *partial, const A *q, const A *kCache, const A *vCache, const int *rowSeq, const int *seqInfo,    \
                            const int *blockTables, int headDim, int kvHeads, int blockSize, int window, float scale, int chunk) {    \
    attention_partial<A, A>(partial, q, kCache, vCache, rowSeq, seqInfo, blockTables, headDim, kvHeads, blockSize, window, scale, chunk); \
  }                                                                                                                                 \
  extern "C" __global__ void __launch_bounds__(ATT_THREADS)                                                                         \
      attention_partial_##S##_e4m3(float *partial, const A *q, const e4m3_t *kCache, const e4m3_t *vCache, const int *rowSeq,       \
                                   const int *seqInfo, const int *blockTables, int headDim, int kvHeads, int blockSize, int window,  \
                                   float scale, int chunk) {                                                                         \
    attention_partial<A, e4m3_t>(partial, q, kCache, vCache, rowSeq, seqInfo, blockTables, headDim, kvHeads, blockSize, window, scale, chunk); \
  }                                                                                                                                 \
  /* out [rows, heads*headDim] from partial [rows, heads, chunks, headDim + 2]. grid (heads, rows). */                            \
  extern "C" __global__ void attention_reduce_##S(A *out, const float *partial, int headDim, int chunks) {                         \
    attention_reduce<A>(out, partial, headDim, chunks);                                                                             \
  }

ATT_PARAMS(f32, float)
ATT_PARAMS(f16, f16_t)
ATT_PARAMS(bf16, bf16_t)

// ---------------------------------------------------------------------------------------------------
// Decode: one query row per sequence.

#define DEC_THREADS 128
#define DEC_MAX_SPLITS 32 // DECODE_MAX_SPLITS in src/cuda/attention-launch.ts: the merge's lanes
#define DEC_MAX_CLUSTER 8 // the portable cluster limit: the splits a cluster's first block merges
#define LOG2E 1.4426950408889634f
#define DEC_UNROLL 4 // positions per group per iteration, loaded before any is used (16-byte lanes; 2 for 32-byte)
// The fp8 cache's loop is bound by latency, not issue (ncu: 45% of issue slots busy, no warp eligible half the
// cycles), so its unpipelined entry (auto's pick over fp8) runs as many blocks an SM as its registers allow: 2
// positions a round (ZINFER_FP8_UNROLL) at 8 blocks an SM (ZINFER_FP8_BLOCKS; 64 registers, no spills). A 64-row
// 7B layer's 2,048 blocks are then 1.9 waves. On one H200, alone at 64 / 32 rows: 85.4 / 44.7 µs, against 97.4 /
// 53.7 at 4 positions and 5 blocks; graphed 7B 64-row fp8 step 7.16–7.27 ms against 7.41–7.58 (PERF-NOTES,
// session 24, has the other shapes tried). The pipelined entry keeps a bound of 4 (ZINFER_FP8_PIPE_BLOCKS): at 6
// it spills.
#ifndef ZINFER_FP8_UNROLL
#define ZINFER_FP8_UNROLL 2
#endif
#ifndef ZINFER_FP8_BLOCKS
#define ZINFER_FP8_BLOCKS 8
#endif
#ifndef ZINFER_FP8_PIPE_BLOCKS
#define ZINFER_FP8_PIPE_BLOCKS 4
#endif
// Heads of 128 and 256 (8 and 16 lanes a position); narrower heads' entries spill at 6 blocks and keep 4.
// (By lanes, FP8_BLOCKS_##LANES: the launcher's signature parser takes no nested parentheses.)
#define FP8_BLOCKS_1 4
#define FP8_BLOCKS_2 4
#define FP8_BLOCKS_4 4
#define FP8_BLOCKS_8 ZINFER_FP8_BLOCKS
#define FP8_BLOCKS_16 ZINFER_FP8_BLOCKS

// Sum over the LANES lanes of a group (aligned within the warp).
template <int LANES> __device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int o = LANES / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// out [rows, heads*headDim]; partial [rows, heads, splits, headDim + 2] f32 scratch; counters [rows*heads]
// int, zero before the first launch and left zero after each; q [rows, heads*headDim]; caches [slots,
// kvHeads*headDim]. headDim a multiple of 8 (16 with an fp8 cache, 4 in the f32 mode), at most LANES·VEC. Split s of a row covers
// chunk = max(minChunk, ceil(span / splits)) positions from lo + s·chunk. grid (splits, heads, rows).
// VEC cached elements of type C, loaded at once and widened to f32 (16 bytes a load): 8 f16/bf16 a lane
// (the `p` and plain entries), 16 in the wide entries (`w`: two loads), 16 e4m3 of an fp8 cache in the 16-bit
// modes, 4 in the f32 parity mode (of f32 or e4m3). Sixteen a lane halve the lanes a position takes and the
// per-position work each lane repeats (slot, exponentials, the group's shuffles): at batch 64 the 8-wide
// kernel was instruction-bound (130 µs a 7B layer with every K/V in L2 against 179 µs from DRAM, H200) and
// the wide one reads at 3.7 TB/s against 3.1; at batch 1, where a block takes one round, it lost time
// (attention-launch.ts picks it from DECODE_WIDE_FROM_ROWS rows).
template <typename C, int VEC> struct CacheVec {
  typedef uint4 Raw;
  static constexpr bool PACKED = false; // products in f16 pairs (only the fp8 cache's 16-wide lanes: dot, axpy)
  static __device__ __forceinline__ Raw zero() { return make_uint4(0u, 0u, 0u, 0u); }
  static __device__ __forceinline__ Raw load(const C *p, bool) { return __ldg(reinterpret_cast<const uint4 *>(p)); }
  static __device__ __forceinline__ Raw shared(const C *p, bool) { return *reinterpret_cast<const uint4 *>(p); }
  static __device__ __forceinline__ void widen(Raw r, float *out) { widen16<C>(r, out); }
};
// 16 elements of a 16-bit type: two 16-byte loads.
template <typename C> struct CacheVec2 {
  struct Raw {
    uint4 a, b;
  };
  static constexpr bool PACKED = false;
  static __device__ __forceinline__ Raw zero() { return {make_uint4(0u, 0u, 0u, 0u), make_uint4(0u, 0u, 0u, 0u)}; }
  static __device__ __forceinline__ Raw load(const C *p, bool full) {
    return {__ldg(reinterpret_cast<const uint4 *>(p)), full ? __ldg(reinterpret_cast<const uint4 *>(p + 8)) : make_uint4(0u, 0u, 0u, 0u)};
  }
  static __device__ __forceinline__ Raw shared(const C *p, bool full) {
    return {*reinterpret_cast<const uint4 *>(p), full ? *reinterpret_cast<const uint4 *>(p + 8) : make_uint4(0u, 0u, 0u, 0u)};
  }
  static __device__ __forceinline__ void widen(Raw r, float *out) {
    widen16<C>(r.a, out);
    widen16<C>(r.b, out + 8);
  }
};
template <> struct CacheVec<f16_t, 16> : CacheVec2<f16_t> {};
template <> struct CacheVec<bf16_t, 16> : CacheVec2<bf16_t> {};
// 16 e4m3 in one 16-byte load: the fp8 cache's reads in the 16-bit modes, so a load moves as many bytes as
// the 16-bit cache's (one load of 8 bytes a lane left the fp8 step as slow as the f16 one: the same loads in
// flight carried half the bytes).
//
// Its products are f16 pairs (PACKED). Widened to f32, each element cost a conversion to f16, one to f32 and an
// f32 FMA, for K and for V: the loop executed 59 M warp instructions a 7B layer at 64 rows and read at 54% of
// DRAM (PERF-NOTES, session 23). In pairs an element pair costs the conversion and one f16x2 FMA. What that
// rounds: q (scaled) to f16; a lane's 16 products summed as two chains of 4 pairs in f16 before f32; the
// softmax weight to f16 and a round's U weighted V summed in f16 before the f32 accumulator. Each is ~2^-11
// relative, against the 2^-4 of an e4m3 element itself. ZINFER_FP8_F32_MATH builds the f32 loop (an A/B).
template <> struct CacheVec<e4m3_t, 16> {
  typedef uint4 Raw;
#ifdef ZINFER_FP8_F32_MATH
  static constexpr bool PACKED = false;
#else
  static constexpr bool PACKED = true;
#endif
  static __device__ __forceinline__ Raw zero() { return make_uint4(0u, 0u, 0u, 0u); }
  // Whole lanes only: heads a multiple of 16 (a 16-byte load of a head 8·odd wide would be misaligned).
  static __device__ __forceinline__ Raw load(const e4m3_t *p, bool) { return __ldg(reinterpret_cast<const uint4 *>(p)); }
  static __device__ __forceinline__ Raw shared(const e4m3_t *p, bool) { return *reinterpret_cast<const uint4 *>(p); }
  static __device__ __forceinline__ void widen(Raw r, float *out) {
    const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
      e4m3x2_to_f32((unsigned short)(w[i] & 0xffffu), out[4 * i], out[4 * i + 1]);
      e4m3x2_to_f32((unsigned short)(w[i] >> 16), out[4 * i + 2], out[4 * i + 3]);
    }
  }
  // Σ q·k over the 16 elements; q2: q as 8 f16 pairs. Two chains, so consecutive FMAs do not wait on each other.
  static __device__ __forceinline__ float dot(Raw r, const u32 *q2) {
    const u32 w[4] = {r.x, r.y, r.z, r.w};
    u32 s0 = 0u, s1 = 0u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      s0 = f16x2_fma(q2[2 * i], e4m3x2_to_f16x2((unsigned short)(w[i] & 0xffffu)), s0);
      s1 = f16x2_fma(q2[2 * i + 1], e4m3x2_to_f16x2((unsigned short)(w[i] >> 16)), s1);
    }
    return __fadd_rn(__fadd_rn(f16x2_lo(s0), f16x2_hi(s0)), __fadd_rn(f16x2_lo(s1), f16x2_hi(s1)));
  }
  // a2 (8 f16 pairs) += e2 · the 16 elements; e2: a weight in both halves.
  static __device__ __forceinline__ void axpy(Raw r, u32 e2, u32 *a2) {
    const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
      a2[2 * i] = f16x2_fma(e2, e4m3x2_to_f16x2((unsigned short)(w[i] & 0xffffu)), a2[2 * i]);
      a2[2 * i + 1] = f16x2_fma(e2, e4m3x2_to_f16x2((unsigned short)(w[i] >> 16)), a2[2 * i + 1]);
    }
  }
};
template <> struct CacheVec<e4m3_t, 4> {
  typedef u32 Raw;
  static constexpr bool PACKED = false;
  static __device__ __forceinline__ Raw zero() { return 0u; }
  static __device__ __forceinline__ Raw load(const e4m3_t *p, bool) { return __ldg(reinterpret_cast<const unsigned int *>(p)); }
  static __device__ __forceinline__ Raw shared(const e4m3_t *p, bool) { return *reinterpret_cast<const unsigned int *>(p); }
  static __device__ __forceinline__ void widen(Raw r, float *out) {
    e4m3x2_to_f32((unsigned short)(r & 0xffffu), out[0], out[1]);
    e4m3x2_to_f32((unsigned short)(r >> 16), out[2], out[3]);
  }
};

// The merge of n ≤ 32 softmax states of one (row, head), each a max, a sum and an unnormalized output read
// through at(c, i) (i = 0 the max, 1 the sum, 2 + d the output's element d), in split order. merge_weights
// (every thread calls it) leaves state c's weight exp2(max_c - max) in sWeight[c] and the largest max in
// *sMax, and returns the weighted sum of sums; merge_element is then the weighted sum of element d. Lane c of
// warp 0 reads state c's max and sum, so the reads are in flight together (one after another, a merge of 27
// splits through global memory was 81 dependent L2 trips); the sums are still added in split order.
template <typename At> __device__ __forceinline__ float merge_weights(At at, int n, float *sWeight, float *sTotal, float *sMax) {
  if (threadIdx.x < 32) {
    const int c = threadIdx.x;
    const float mc = c < n ? at(c, 0) : NEG_INF;
    const float lc = c < n ? at(c, 1) : 0.f;
    float MM = mc;
#pragma unroll
    for (int o2 = 16; o2 > 0; o2 >>= 1) MM = fmaxf(MM, __shfl_xor_sync(0xffffffffu, MM, o2));
    const float wc = mc != NEG_INF ? exp2f(mc - MM) : 0.f;
    if (c < n) sWeight[c] = wc;
    float LL = 0.f;
    for (int k = 0; k < n; k++) {
      const float wk = __shfl_sync(0xffffffffu, wc, k), lk = __shfl_sync(0xffffffffu, lc, k);
      if (__shfl_sync(0xffffffffu, mc, k) != NEG_INF) LL += lk * wk;
    }
    if (c == 0) {
      *sTotal = LL;
      *sMax = MM;
    }
  }
  __syncthreads();
  return *sTotal;
}
template <typename At> __device__ __forceinline__ float merge_element(At at, int n, const float *sWeight, int d) {
  float a = 0.f;
  for (int c0 = 0; c0 < n; c0 += 8) {
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = c0 + k < n ? at(c0 + k, 2 + d) : 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++)
      if (c0 + k < n && sWeight[c0 + k] != 0.f) a += v[k] * sWeight[c0 + k];
  }
  return a;
}

// PIPE: the next iteration's K and V (and their block-table lookups) are loaded before this iteration's
// are used, so a block always has a round of loads in flight; the arithmetic and its order are unchanged
// (the same operations in the same order as PIPE = false; yet on H100 and H200 some greedy ids of a
// 64-row random-weight step differ between the two, so they are equal within rounding, not bit for bit;
// both pass the reference checks). Entry points attn_decodeLANES_S and attn_decodeLANESp_S.
//
// The step's own K and V: q [rows, heads*headDim] and kNew, vNew [rows, kvHeads*headDim] as the q/k/v GEMV
// made them (before rotary when rotaryDim > 0: invFreq, interleaved and ropeScaling as in rotary.cu);
// slots [rows] the cache rows they go to. pf, pfBytes: weights to ask L2 for (null, 0: none).
template <typename A, int LANES, bool PIPE, typename C, int VEC>
__device__ void attn_decode(A *out, float *partial, int *counters, const A *q, C *kCache, C *vCache, const int *rowSeq,
                            const int *seqInfo, const int *blockTables, int headDim, int kvHeads, int blockSize, int window, float scale,
                            int minChunk, const A *kNew, const A *vNew, const int *slots, const double *invFreq, int rotaryDim,
                            int interleaved, float ropeScaling, const void *pf, int pfBytes) {
  typedef CacheVec<C, VEC> CV;
  // Positions a group loads per round: DEC_UNROLL of 16 bytes a K and a V, half as many of 32, and
  // ZINFER_FP8_UNROLL over an fp8 cache (fewer registers, so more blocks an SM: ZINFER_FP8_BLOCKS).
  constexpr int U = CV::PACKED ? ZINFER_FP8_UNROLL : sizeof(typename CV::Raw) > 16 ? DEC_UNROLL / 2 : DEC_UNROLL;
  constexpr int G = DEC_THREADS / LANES; // position groups per block
  __shared__ float sM[G], sL[G], sAcc[G][LANES * VEC];
  __shared__ float sWeight[DEC_MAX_SPLITS], sTotal, sMaxAll; // the merge's weights exp2(m_c - max), their sum, the max
  __shared__ float sSplit[DEC_MAX_CLUSTER][ATT_MAX_HEAD_DIM + 2]; // a cluster's splits: max, sum, output (its first block's)
  __shared__ int sLast;
  __shared__ double cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
  __shared__ __align__(16) A sQ[ATT_MAX_HEAD_DIM];
  __shared__ __align__(16) C sK[ATT_MAX_HEAD_DIM], sV[ATT_MAX_HEAD_DIM];
  const int s = blockIdx.x, h = blockIdx.y, r = blockIdx.z, splits = gridDim.x, heads = gridDim.y;
  const int group = threadIdx.x / LANES, li = threadIdx.x % LANES, d0 = li * VEC;
  const bool active = d0 < headDim;
  // A head of 8·odd elements leaves the last lane half a vector: of a 16-bit cache it loads only that half
  // (16 bytes); the rest reads as zeros. (An fp8 cache needs heads a multiple of 16: decodeLanes.)
  const bool full = d0 + VEC <= headDim;
  // Before waiting on the kernel before this one (PDL), everything that does not depend on it: the weights
  // asked of L2, the row's place from the step's metadata (uploaded before the step's first kernel), the
  // cos/sin table, and (PIPE) the first round of cached K/V, which earlier steps wrote; never the row's own
  // position p, which this launch writes (its value comes from registers).
  l2_prefetch(pf, pfBytes, s + (i64)splits * (h + (i64)heads * r), (i64)splits * heads * gridDim.z);
  const int *info = seqInfo + 4 * rowSeq[r];
  const int p = info[2] - info[1] + (r - info[0]); // this row's position
  const int lo = window > 0 ? max(0, p - window + 1) : 0;
  const int span = p + 1 - lo;
  const int chunk = max(minChunk, (span + splits - 1) / splits);
  // Splits that hold positions: the first `used` (≥ 1, split 0 holds lo). The rest have nothing to read,
  // write or merge, so they leave before waiting on the kernel before this one.
  const int used = (span + chunk - 1) / chunk;
  if (s >= used) return;
  const int begin = lo + s * chunk, end = min(p + 1, begin + chunk);
  const int *table = blockTables + info[3];
  const int kvWidth = kvHeads * headDim;
  const int kvHead = h / (heads / kvHeads);
  const int kvOff = kvHead * headDim + d0;

  rope_table(cs, sn, (double)p, invFreq, rotaryDim, ropeScaling);
  typename CV::Raw kr[U], vr[U]; // the raw K and V of a round (PIPE: of the next one)
  // A position's cache slot. Block sizes are powers of two in practice: a shift and a mask then, not the
  // integer division that was a good part of this loop's instructions.
  const bool pow2 = (blockSize & (blockSize - 1)) == 0;
  const int shift = __ffs(blockSize) - 1;
  auto slotOf = [&](int j) -> i64 {
    if (pow2) return ((i64)table[j >> shift] << shift) + (j & (blockSize - 1));
    return (i64)table[j / blockSize] * blockSize + j % blockSize;
  };
  auto fetch = [&](int base) {
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int j = base + group + u * G;
      const bool ok = active && j < end && j != p;
      const i64 slot = ok ? slotOf(j) : 0;
      kr[u] = ok ? CV::load(kCache + slot * kvWidth + kvOff, full) : CV::zero();
      vr[u] = ok ? CV::load(vCache + slot * kvWidth + kvOff, full) : CV::zero();
    }
  };
  if constexpr (PIPE) fetch(begin);
  grid_dep_wait();
  grid_dep_launch();

  // q rotated and rounded to A, as rope_kv stored it; the new position's k (rotated) and v in the cache's
  // type, for the split that holds it, written to the cache by the first q head of the KV head.
  const A *qRow = q + ((i64)r * heads + h) * headDim;
  for (int t = threadIdx.x; t < headDim; t += DEC_THREADS) sQ[t] = from_f32<A>(rotate_dim(qRow, t, rotaryDim, interleaved, cs, sn));
  if (begin <= p && p < end) {
    const i64 src = ((i64)r * kvHeads + kvHead) * headDim, dst = (i64)slots[r] * kvWidth + (i64)kvHead * headDim;
    const bool writes = h % (heads / kvHeads) == 0;
    for (int t = threadIdx.x; t < headDim; t += DEC_THREADS) {
      const C kc = CachePut<C, A>::round(rotate_dim(kNew + src, t, rotaryDim, interleaved, cs, sn));
      const C vc = CachePut<C, A>::copy(vNew[src + t]);
      sK[t] = kc;
      sV[t] = vc;
      if (writes) {
        kCache[dst + t] = kc;
        vCache[dst + t] = vc;
      }
    }
  }
  __syncthreads();
  TRACE_MARK(11);

  // Cached K and V stay raw (VEC elements of C, one load each) until used: widened one position at a time,
  // so the registers hold a round of raw loads, not a round of f32 vectors.
  typename CV::Raw kp = CV::zero(), vp = CV::zero(); // the new position's, for the split that holds it
  float qv[VEC], acc[VEC];
  u32 q2[VEC / 2]; // PACKED: qv as f16 pairs
#pragma unroll
  for (int k = 0; k < VEC; k++) qv[k] = acc[k] = 0.f;
  if (active) {
    if (begin <= p && p < end) {
      kp = CV::shared(sK + d0, full); // a half lane's upper half stays zero: sK holds only headDim elements
      vp = CV::shared(sV + d0, full);
    }
    // Element reads: the vector loaders (load_act, CacheVec::load) take global addresses only, which a shared one faults.
#pragma unroll
    for (int k = 0; k < VEC; k++) qv[k] = d0 + k < headDim ? to_f32(sQ[d0 + k]) : 0.f; // a half lane's upper elements add nothing
    // Scores in base-2 units (scale · log2 e folded into q): every exponential below is exp2f, one MUFU.EX2
    // where expf needs a range reduction first; the softmax is unchanged (2^(s·log2 e) = e^s).
#pragma unroll
    for (int k = 0; k < VEC; k++) qv[k] *= scale * LOG2E;
  }
  if constexpr (CV::PACKED) {
#pragma unroll
    for (int k = 0; k < VEC / 2; k++) q2[k] = f16x2_pack(qv[2 * k], qv[2 * k + 1]);
  }
  float m = NEG_INF, l = 0.f;
  // Every thread runs the same iterations (the group shuffles need whole warps); group g takes positions
  // base + g + u·G.
  for (int base = begin; base < end; base += G * U) {
    const int j0 = base + group;
    typename CV::Raw kc[U], vc[U];
    if constexpr (!PIPE) fetch(base);
#pragma unroll
    for (int u = 0; u < U; u++) {
      kc[u] = kr[u];
      vc[u] = vr[u];
    }
    if constexpr (PIPE) fetch(base + G * U);
    // The new position's K and V come from registers (another block of this launch writes its cache row,
    // so it is never loaded). Selecting values, not pointers: a load never sees a shared address.
#pragma unroll
    for (int u = 0; u < U; u++) {
      if (j0 + u * G == p) {
        kc[u] = kp;
        vc[u] = vp;
      }
    }
    // Explicit roundings (no contraction left to the compiler): the variants compile to different code,
    // and each should round every step the same way.
    float sc[U];
    float mNew = m;
#pragma unroll
    for (int u = 0; u < U; u++) {
      float dot = 0.f;
      if constexpr (CV::PACKED) {
        dot = CV::dot(kc[u], q2);
      } else {
        float kf[VEC];
        CV::widen(kc[u], kf);
#pragma unroll
        for (int k = 0; k < VEC; k++) dot = __fmaf_rn(qv[k], kf[k], dot);
      }
      dot = group_sum<LANES>(dot);
      sc[u] = j0 + u * G < end ? dot : NEG_INF;
      mNew = fmaxf(mNew, sc[u]);
    }
    const float corr = exp2f(m - mNew); // 0 on the first position (m = -inf); mNew is finite
    l = __fmul_rn(l, corr);
#pragma unroll
    for (int k = 0; k < VEC; k++) acc[k] = __fmul_rn(acc[k], corr);
    if constexpr (CV::PACKED) {
      u32 a2[VEC / 2]; // the round's weighted V, in f16 pairs, then added to acc
#pragma unroll
      for (int k = 0; k < VEC / 2; k++) a2[k] = 0u;
#pragma unroll
      for (int u = 0; u < U; u++) {
        const float e = exp2f(sc[u] - mNew); // 0 for a position past the end
        l = __fadd_rn(l, e);
        CV::axpy(vc[u], f16x2_pack(e, e), a2);
      }
#pragma unroll
      for (int k = 0; k < VEC / 2; k++) {
        acc[2 * k] = __fadd_rn(acc[2 * k], f16x2_lo(a2[k]));
        acc[2 * k + 1] = __fadd_rn(acc[2 * k + 1], f16x2_hi(a2[k]));
      }
    } else {
#pragma unroll
      for (int u = 0; u < U; u++) {
        float vf[VEC];
        CV::widen(vc[u], vf);
        const float e = exp2f(sc[u] - mNew); // 0 for a position past the end
        l = __fadd_rn(l, e);
#pragma unroll
        for (int k = 0; k < VEC; k++) acc[k] = __fmaf_rn(e, vf[k], acc[k]);
      }
    }
    m = mNew;
  }

  TRACE_MARK(12);
  // Merge the groups of this block.
  if (li == 0) {
    sM[group] = m;
    sL[group] = l;
  }
  if (active) {
#pragma unroll
    for (int k = 0; k < VEC; k++) sAcc[group][d0 + k] = acc[k];
  }
  __syncthreads();
  float M = NEG_INF;
  for (int g = 0; g < G; g++) M = fmaxf(M, sM[g]);
  float L = 0.f;
  for (int g = 0; g < G; g++)
    if (sM[g] != NEG_INF) L += sL[g] * exp2f(sM[g] - M);
  A *o = out + ((i64)r * heads + h) * headDim;
  // This split's unnormalized output, element d: the groups' merged.
  auto blockAcc = [&](int d) {
    float a = 0.f;
    for (int g = 0; g < G; g++)
      if (sM[g] != NEG_INF) a += sAcc[g][d] * exp2f(sM[g] - M);
    return a;
  };
  if (used == 1) { // the whole context in this block: split 0 holds the row's own position
    for (int d = threadIdx.x; d < headDim; d += DEC_THREADS) o[d] = from_f32<A>(blockAcc(d) / L);
    return;
  }
  // The splits' merge. In a clustered launch (decodeCluster on the host: CL blocks of consecutive splits of one
  // (row, head)) each split's state goes into the shared memory of its cluster's first block, which after one
  // cluster barrier merges them and, when its cluster holds the whole context, writes the output: no global
  // memory, fence or counter between the K/V and the output (at short contexts those were most of the
  // kernel's time after its K/V were used: PERF-NOTES, session 20). Otherwise (no cluster, or a context over
  // several clusters) each split, or each cluster's first block, publishes its state to `partial`, and the
  // last of them to finish merges them all (a counter in global memory).
  const int CL = cluster_blocks(); // 1 without a cluster
  const int n = min(CL, used - s); // splits with positions in this block's cluster (read by its first block)
  auto inCluster = [&](int c, int i) { return sSplit[c][i]; };
  int unit = s, units = used;
  float pubM = M, pubL = L; // the state published to `partial`
  if (CL > 1) {
    const int rank = s % CL;
    float *row = cluster_map(&sSplit[rank][0], 0);
    if (threadIdx.x == 0) {
      row[0] = M;
      row[1] = L;
    }
    for (int d = threadIdx.x; d < headDim; d += DEC_THREADS) row[2 + d] = blockAcc(d);
    cluster_sync(); // splits past the context have exited, which counts as arriving
    if (rank != 0) return;
    TRACE_MARK(13);
    const float LL = merge_weights(inCluster, n, sWeight, &sTotal, &sMaxAll);
    if (used <= CL) {
      for (int d = threadIdx.x; d < headDim; d += DEC_THREADS) o[d] = from_f32<A>(merge_element(inCluster, n, sWeight, d) / LL);
      return;
    }
    pubM = sMaxAll; // this cluster's merged state is one unit of the merge through global memory
    pubL = LL;
    unit = s / CL;
    units = (used + CL - 1) / CL;
  }
  const int stride = headDim + 2;
  float *P = partial + ((i64)r * heads + h) * splits * stride;
  float *mine = P + (i64)unit * stride;
  if (threadIdx.x == 0) {
    mine[0] = pubM;
    mine[1] = pubL;
  }
  for (int d = threadIdx.x; d < headDim; d += DEC_THREADS) mine[2 + d] = CL > 1 ? merge_element(inCluster, n, sWeight, d) : blockAcc(d);
  // The last unit to finish merges them all (threadFenceReduction): publish, then count.
  __threadfence();
  __syncthreads();
  TRACE_MARK(13);
  if (threadIdx.x == 0) sLast = atomicAdd(&counters[r * heads + h], 1) == units - 1;
  __syncthreads();
  TRACE_MARK(14);
  if (!sLast) return;
  __threadfence();
  auto published = [&](int c, int i) { return __ldcg(P + (i64)c * stride + i); };
  const float LL = merge_weights(published, units, sWeight, &sTotal, &sMaxAll);
  for (int d = threadIdx.x; d < headDim; d += DEC_THREADS) o[d] = from_f32<A>(merge_element(published, units, sWeight, d) / LL);
  if (threadIdx.x == 0) counters[r * heads + h] = 0; // ready for the next launch (or graph replay)
}

#define DECODE_ENTRY_B(S, A, LANES, P, PIPE, KS, CT, VEC, MINB)                                                                       \
  extern "C" __global__ void __launch_bounds__(DEC_THREADS, MINB)                                                                      \
      attn_decode##LANES##P##_##S##KS(A *out, float *partial, int *counters, const A *q, CT *kCache, CT *vCache, const int *rowSeq, \
                               const int *seqInfo, const int *blockTables, int headDim, int kvHeads, int blockSize, int window,      \
                               float scale, int minChunk, const A *kNew, const A *vNew, const int *slots, const double *invFreq,     \
                               int rotaryDim, int interleaved, float ropeScaling, const void *pf, int pfBytes) {                     \
    attn_decode<A, LANES, PIPE, CT, VEC>(out, partial, counters, q, kCache, vCache, rowSeq, seqInfo, blockTables, headDim, kvHeads, blockSize,      \
                          window, scale, minChunk, kNew, vNew, slots, invFreq, rotaryDim, interleaved, ropeScaling, pf, pfBytes);   \
  }
#define DECODE_ENTRY(S, A, LANES, P, PIPE, KS, CT, VEC) DECODE_ENTRY_B(S, A, LANES, P, PIPE, KS, CT, VEC, 4)
// Entry points attn_decode16_f16 (cache in A), attn_decode16p_f16 (PIPE), attn_decode8w_f16 (PIPE, 16
// elements a lane), attn_decode8_f16_e4m3 (fp8 cache), attn_decode8p_f16_e4m3. The f32 parity mode has no
// PIPE entries (it is for tests, not speed; each entry point costs NVRTC time on every fresh machine, and
// ptxas spills one of them).
#define DECODE_NARROW(S, A, LANES)                       \
  DECODE_ENTRY(S, A, LANES, , false, , A, 8)             \
  DECODE_ENTRY(S, A, LANES, p, true, , A, 8)
// 16 elements a lane: at most 16 lanes (heads of at most ATT_MAX_HEAD_DIM = 256).
#define DECODE_WIDE(S, A, LANES)                         \
  DECODE_ENTRY(S, A, LANES, w, true, , A, 16)            \
  DECODE_ENTRY_B(S, A, LANES, , false, _e4m3, e4m3_t, 16, FP8_BLOCKS_##LANES)  \
  DECODE_ENTRY_B(S, A, LANES, p, true, _e4m3, e4m3_t, 16, ZINFER_FP8_PIPE_BLOCKS)
#define DECODE_PIPES_F32(LANES)                                 \
  DECODE_ENTRY(f32, float, LANES, , false, , float, 4)          \
  DECODE_ENTRY(f32, float, LANES, , false, _e4m3, e4m3_t, 4)
#define DECODE_LANES(S, A)  \
  DECODE_NARROW(S, A, 1)    \
  DECODE_NARROW(S, A, 2)    \
  DECODE_NARROW(S, A, 4)    \
  DECODE_NARROW(S, A, 8)    \
  DECODE_NARROW(S, A, 16)   \
  DECODE_NARROW(S, A, 32)   \
  DECODE_WIDE(S, A, 1)      \
  DECODE_WIDE(S, A, 2)      \
  DECODE_WIDE(S, A, 4)      \
  DECODE_WIDE(S, A, 8)      \
  DECODE_WIDE(S, A, 16)

DECODE_PIPES_F32(1)
DECODE_PIPES_F32(2)
DECODE_PIPES_F32(4)
DECODE_PIPES_F32(8)
DECODE_PIPES_F32(16)
DECODE_PIPES_F32(32)
DECODE_LANES(f16, f16_t)
DECODE_LANES(bf16, bf16_t)
