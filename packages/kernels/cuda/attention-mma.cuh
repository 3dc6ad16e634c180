// The decode attention's loop over cached positions on the tensor cores, for an fp8 (e4m3) cache in the f16
// mode (attn_decodem* in attention.cu). At batch 64 the lanes loop was instruction-bound on an fp8 cache:
// each element costs a widening to f16, one to f32 and an FMA, for K and for V, so it read 268 MB a 7B layer
// at 2.8 TB/s (61% of an H200's read; the f16 cache's wide loop 3.96). Here a warp takes 16 positions a tile
// and does q·K and P·V as mma.sync m16n8k16 (f16 in, f32 sums): an element costs half a widening (two e4m3
// an instruction, straight into the f16 pair a fragment holds) and 1/16 of an MMA instruction.
//
// One query row against the cache: the MMA's other rows or columns repeat it, and only one of each is read.
//   - Scores, Sᵀ = Q Kᵀ per 8 positions: A = q in every row, B = K (k = head dims, n = positions), so thread
//     (g, t) (g = lane / 4, t = lane % 4) loads position g of the 8 (rows g and g + 8 of the tile) and gets
//     the scores of positions 2t and 2t + 1 of each 8 (C's columns).
//   - Output, Oᵀ = Vᵀ Pᵀ: A = V (m = head dims, k = positions), B = P in every column. B's fragment of thread
//     (g, t) is positions 2t, 2t + 1, 2t + 8, 2t + 9: exactly the scores the thread holds, so P never moves
//     between lanes.
// A dot product does not depend on the order of the head's dims, so each side takes them in the order its
// loads give (the same order for q and K): the scores' thread t loads the 16-byte vectors t·HD/64.. of its K
// rows, whose word j fills the k slots {2t, 2t+1} (low half) and {2t+8, 2t+9} (high half) of the j-th MMA;
// the output's thread g loads dims g·HD/8 .. of its four V rows, and byte pairs of two positions are
// gathered with one byte permute into the e4m3 pair an A register widens from.
//
// Roundings: products of f16 q and e4m3 K/V are exact and summed in f32, as in the lanes loop; P is rounded
// to f16 for the MMA (as flash attention does) and the softmax's sum adds those rounded values, so weights
// and their normalisation agree. The output differs from the lanes loop's by about P's rounding (2^-12
// of a weight).
#pragma once
#include "fp8.cuh"
#include "mma.cuh"

// Two e4m3 (a 16-bit pair) widened to the f16 pair a fragment register holds.
__device__ __forceinline__ u32 e4m3x2_to_f16x2(u32 pair) {
  u32 h2;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"((unsigned short)pair));
  return h2;
}

// N words from global memory (__ldg: the cache rows of earlier steps, complete before the step), or from
// shared memory (the step's own position, which another block of the launch writes to the cache).
template <int N> __device__ __forceinline__ void cache_words(u32 (&w)[N], const e4m3_t *p, bool shared) {
  static_assert(N == 2 || N % 4 == 0, "whole 8- or 16-byte loads");
  if constexpr (N == 2) {
    const uint2 v = shared ? *reinterpret_cast<const uint2 *>(p) : __ldg(reinterpret_cast<const uint2 *>(p));
    w[0] = v.x;
    w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < N / 4; i++) {
      const uint4 v = shared ? reinterpret_cast<const uint4 *>(p)[i] : __ldg(reinterpret_cast<const uint4 *>(p) + i);
      w[4 * i] = v.x;
      w[4 * i + 1] = v.y;
      w[4 * i + 2] = v.z;
      w[4 * i + 3] = v.w;
    }
  }
}

// A warp's softmax state over its tiles (positions begin + 16·warp + 64·i ..): m the running max (base-2
// units), l this thread's share of the sum, acc[j] the j-th output MMA's sums (c0: dim g·HD/8 + 2j, c2: the
// next dim).
template <int HD> struct DecodeMma {
  static_assert(HD == 64 || HD == 128, "head sizes of the tensor-core decode loop (whole V loads; the register budget)");
  static constexpr int J = HD / 16;  // MMAs a side per 8 (scores) or 16 (output) positions
  static constexpr int KW = HD / 16; // words of a thread's K chunk (HD / 4 e4m3)
  static constexpr int VW = HD / 32; // words of a thread's V chunk (HD / 8 e4m3)
  u32 kr[2][KW], vr[4][VW];          // a tile's raw K (rows g, g + 8) and V (rows 2t, 2t + 1, 2t + 8, 2t + 9)
  int g, t;

  __device__ __forceinline__ DecodeMma() : g((threadIdx.x & 31) >> 2), t(threadIdx.x & 3) {}

  // The cached rows of the tile at T: zeros past the end and at the step's own position p (used from shared
  // memory in run). slotOf(j): position j's cache row.
  template <typename SlotOf>
  __device__ __forceinline__ void fetch(int T, int end, int p, const e4m3_t *kBase, const e4m3_t *vBase, i64 kvWidth, SlotOf slotOf) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int j = T + g + 8 * i;
      const bool ok = j < end && j != p;
      if (ok) cache_words(kr[i], kBase + slotOf(j) * kvWidth + t * (HD / 4), false);
      else
#pragma unroll
        for (int w = 0; w < KW; w++) kr[i][w] = 0u;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int j = T + 2 * t + (i & 1) + 8 * (i >> 1);
      const bool ok = j < end && j != p;
      if (ok) cache_words(vr[i], vBase + slotOf(j) * kvWidth + g * (HD / 8), false);
      else
#pragma unroll
        for (int w = 0; w < VW; w++) vr[i][w] = 0u;
    }
  }

  // The loop: tiles T = first, first + stride, ... below end, the next tile's loads in flight while one is
  // used (the first fetched by the caller, before its wait on the kernel before). sQ: q rotated, in f16;
  // sK, sV: the step's own position's K and V (p, when this split holds it); qscale: scale · log2 e.
  template <typename SlotOf>
  __device__ __forceinline__ void run(float &m, float &l, float (&acc)[J][4], int first, int stride, int end, int p, const f16_t *sQ,
                                      const e4m3_t *sK, const e4m3_t *sV, const e4m3_t *kBase, const e4m3_t *vBase, i64 kvWidth,
                                      float qscale, SlotOf slotOf) {
    u32 qa[J][2]; // q's fragment: dims t·HD/4 + 4j + {0, 1} and + {2, 3}, in every row of A
#pragma unroll
    for (int j = 0; j < J; j++) {
      qa[j][0] = *reinterpret_cast<const u32 *>(sQ + t * (HD / 4) + 4 * j);
      qa[j][1] = *reinterpret_cast<const u32 *>(sQ + t * (HD / 4) + 4 * j + 2);
    }
    m = NEG_INF;
    l = 0.f;
#pragma unroll
    for (int j = 0; j < J; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    for (int T = first; T < end; T += stride) {
      u32 kc[2][KW], vc[4][VW];
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int w = 0; w < KW; w++) kc[i][w] = kr[i][w];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int w = 0; w < VW; w++) vc[i][w] = vr[i][w];
      if (T + stride < end) fetch(T + stride, end, p, kBase, vBase, kvWidth, slotOf);
      // The step's own position: its K and V from shared memory (selected as values, never as a pointer
      // a global load could see).
#pragma unroll
      for (int i = 0; i < 2; i++)
        if (T + g + 8 * i == p) cache_words(kc[i], sK + t * (HD / 4), true);
#pragma unroll
      for (int i = 0; i < 4; i++)
        if (T + 2 * t + (i & 1) + 8 * (i >> 1) == p) cache_words(vc[i], sV + g * (HD / 8), true);

      // Scores of positions T + 8i + 2t + {0, 1}, in base-2 units; -inf past the end.
      float s[4];
#pragma unroll
      for (int i = 0; i < 2; i++) {
        float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int j = 0; j < J; j++)
          mma16816<f16_t>(c, qa[j][0], qa[j][0], qa[j][1], qa[j][1], e4m3x2_to_f16x2(kc[i][j] & 0xffffu), e4m3x2_to_f16x2(kc[i][j] >> 16));
#pragma unroll
        for (int e = 0; e < 2; e++) s[2 * i + e] = T + 8 * i + 2 * t + e < end ? __fmul_rn(c[e], qscale) : NEG_INF;
      }
      float tmax = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[2], s[3]));
      tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
      tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2)); // finite: position T < end is thread t = 0's
      // Lane 0's: the rows of Sᵀ repeat one product, so every g has the same scores; should the MMA round a
      // row differently, the max (and the branch below) still stays one value for the whole warp.
      tmax = __shfl_sync(0xffffffffu, tmax, 0);
      const float mNew = fmaxf(m, tmax);
      if (mNew != m) { // warp-uniform; after the first tiles the max rarely moves
        const float corr = exp2f(m - mNew); // 0 on the first tile (m = -inf)
        l = __fmul_rn(l, corr);
#pragma unroll
        for (int j = 0; j < J; j++)
#pragma unroll
          for (int e = 0; e < 4; e++) acc[j][e] = __fmul_rn(acc[j][e], corr);
        m = mNew;
      }
      // P rounded to f16: the output MMA's B (positions 2t, 2t + 1; 2t + 8, 2t + 9), and the sum of those.
      u32 pb[2];
#pragma unroll
      for (int i = 0; i < 2; i++) {
        pb[i] = pack2<f16_t>(exp2f(s[2 * i] - m), exp2f(s[2 * i + 1] - m));
        f16_t lo, hi;
        lo.bits = (u16)(pb[i] & 0xffffu);
        hi.bits = (u16)(pb[i] >> 16);
        l = __fadd_rn(l, __fadd_rn(to_f32(lo), to_f32(hi)));
      }
      // Output: rows g and g + 8 of the j-th MMA are dims g·HD/8 + 2j and + 2j + 1 (bytes 2j, 2j + 1 of the
      // thread's V chunk); a byte permute pairs one dim of two positions.
#pragma unroll
      for (int j = 0; j < J; j++) {
        const u32 sel = (j & 1) ? 0x7362u : 0x5140u;
        const u32 x = __byte_perm(vc[0][j >> 1], vc[1][j >> 1], sel); // positions 2t, 2t + 1
        const u32 y = __byte_perm(vc[2][j >> 1], vc[3][j >> 1], sel); // positions 2t + 8, 2t + 9
        mma16816<f16_t>(acc[j], e4m3x2_to_f16x2(x & 0xffffu), e4m3x2_to_f16x2(x >> 16), e4m3x2_to_f16x2(y & 0xffffu), e4m3x2_to_f16x2(y >> 16),
                        pb[0], pb[1]);
      }
    }
    l = __fadd_rn(l, __shfl_xor_sync(0xffffffffu, l, 1));
    l = __fadd_rn(l, __shfl_xor_sync(0xffffffffu, l, 2));
  }

  // This warp's state into the block's merge: its max, sum and output (thread t = 0 of each g writes).
  __device__ __forceinline__ void store(float *sM, float *sL, float *sAcc, float m, float l, const float (&acc)[J][4]) const {
    if ((threadIdx.x & 31) == 0) {
      *sM = m;
      *sL = l;
    }
    if (t == 0)
#pragma unroll
      for (int j = 0; j < J; j++) {
        sAcc[g * (HD / 8) + 2 * j] = acc[j][0];
        sAcc[g * (HD / 8) + 2 * j + 1] = acc[j][2];
      }
  }
};
