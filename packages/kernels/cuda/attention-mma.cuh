// The decode attention's loop over cached positions on the tensor cores, for an fp8 (e4m3) cache in the f16
// mode (attn_decodem* in attention.cu). At batch 64 the lanes loop was instruction-bound on an fp8 cache:
// each element costs a widening to f16, one to f32 and an FMA, for K and for V, so it read 268 MB a 7B layer
// at 2.8 TB/s (61% of an H200's read; the f16 cache's wide loop 3.96). Here a warp takes 16 positions a tile
// and does q·K and P·V as mma.sync m16n8k16 (f16 in, f32 sums): an element costs half a widening (two e4m3
// an instruction, straight into the f16 pair a fragment holds) and 1/16 of an MMA instruction; the cached rows
// stream into shared memory by bulk copies, several tiles ahead.
//
// One query row against the cache: the MMA's other rows or columns repeat it, and only one of each is read.
//   - Scores, Sᵀ = Q Kᵀ per 8 positions: A = q in every row, B = K (k = head dims, n = positions), so thread
//     (g, t) (g = lane / 4, t = lane % 4) loads position g of the 8 (rows g and g + 8 of the tile) and gets
//     the scores of positions 2t and 2t + 1 of each 8 (C's columns).
//   - Output, Oᵀ = Vᵀ Pᵀ: A = V (m = head dims, k = positions), B = P in every column. B's fragment of thread
//     (g, t) is positions 2t, 2t + 1, 2t + 8, 2t + 9: exactly the scores the thread holds, so P never moves
//     between lanes.
// A dot product does not depend on the order of the head's dims, so each side takes them in the order its
// reads give (the same order for q and K): the scores' thread t reads bytes t·HD/4 .. of its K rows, whose word j fills the k slots {2t, 2t+1} (low half) and {2t+8, 2t+9} (high half) of the j-th MMA;
// the output's thread g reads dims g·HD/8 .. of its four V rows, and byte pairs of two positions are
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

// N words of shared memory (16-byte aligned for N ≥ 4, 8-byte for N = 2).
template <int N> __device__ __forceinline__ void smem_words(u32 (&w)[N], const e4m3_t *p) {
  static_assert(N == 2 || N % 4 == 0, "whole 8- or 16-byte reads");
  if constexpr (N == 2) {
    const uint2 v = *reinterpret_cast<const uint2 *>(p);
    w[0] = v.x;
    w[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < N / 4; i++) {
      const uint4 v = reinterpret_cast<const uint4 *>(p)[i];
      w[4 * i] = v.x;
      w[4 * i + 1] = v.y;
      w[4 * i + 2] = v.z;
      w[4 * i + 3] = v.w;
    }
  }
}

// 16 bytes from global src to shared dst (cp.async, L2 only), or 16 zero bytes when !ok (src not read).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"((u32)__cvta_generic_to_shared(dst)), "l"(__cvta_generic_to_global(src)),
               "r"(ok ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Until at most N of this thread's groups are in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

// A warp's loop over its tiles (positions first, first + stride, ... below end, 16 each) with the cached K and V
// streamed through a ring of STAGES tiles in shared memory by cp.async: a lane copies a cached row (lanes 0–15
// K, 16–31 V) as 16-byte pieces, STAGES − 1 tiles in flight while one is used, and no register holds a load in
// flight (the register-pipelined version of this loop held one tile in flight in 64 registers, 3 blocks an SM:
// latency-bound at 2.5 TB/s on an H200, as the lanes loop was at 2.6; bulk copies a row a lane compiled to a
// loop over the lanes, their operands being uniform registers). Rows are ROW = HD + 16 bytes apart in the ring,
// so the fragment reads of a quarter warp fall in distinct banks. Past the end and at the step's own position
// p the copies write zeros: scores there are -inf, and p's K and V come from sK and sV.
template <int HD, int STAGES, int WARPS> struct DecodeMma {
  static_assert(HD == 64 || HD == 128, "head sizes of the tensor-core decode loop (whole fragment loads)");
  static constexpr int J = HD / 16;  // MMAs a side per 8 (scores) or 16 (output) positions
  static constexpr int KW = HD / 16; // words of a thread's K chunk (HD / 4 e4m3)
  static constexpr int VW = HD / 32; // words of a thread's V chunk (HD / 8 e4m3)
  static constexpr int ROW = HD + 16;
  static constexpr int TILE = 32 * ROW;           // a stage: 16 K rows, then 16 V rows
  static constexpr int WARP_BYTES = STAGES * TILE; // a warp's ring
  // A block's dynamic shared memory: its warps' rings (decodeMmaSharedBytes in attention-launch.ts).
  static constexpr int BLOCK_BYTES = WARPS * WARP_BYTES;
  unsigned char *ring;
  int lane, g, t;

  // dyn: the block's dynamic shared memory (BLOCK_BYTES).
  __device__ __forceinline__ explicit DecodeMma(unsigned char *dyn)
      : ring(dyn + (threadIdx.x >> 5) * WARP_BYTES), lane(threadIdx.x & 31), g((threadIdx.x & 31) >> 2), t(threadIdx.x & 3) {}

  // Tile i (positions T .. T + 15) into stage i % STAGES, as one commit group of this thread (an empty group
  // past the end, so the group count stays one a tile). slotOf(j): position j's cache row.
  template <typename SlotOf>
  __device__ __forceinline__ void issue(int i, int T, int end, int p, const e4m3_t *kBase, const e4m3_t *vBase, i64 kvWidth, SlotOf slotOf) {
    if (T < end) {
      const int j = T + (lane & 15);
      const bool ok = j < end && j != p;
      const e4m3_t *src = (lane < 16 ? kBase : vBase) + (ok ? slotOf(j) * kvWidth : 0);
      unsigned char *dst = ring + (i % STAGES) * TILE + lane * ROW;
#pragma unroll
      for (int c = 0; c < HD / 16; c++) cp_async16(dst + 16 * c, src + 16 * c, ok);
    }
    cp_async_commit();
  }
  // The loop (tiles 0 .. STAGES − 2 issued by the caller, before its wait on the kernel before; issue is called
  // for every one of them, so each thread has one commit group a tile). sQ: q rotated,
  // in f16; sK, sV: the step's own position's K and V; qscale: scale · log2 e. m the running max (base-2
  // units), l the sum, acc[j] the j-th output MMA's sums (c0: dim g·HD/8 + 2j, c2: the next dim).
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
    int i = 0;
    for (int T = first; T < end; T += stride, i++) {
      issue(i + STAGES - 1, T + (STAGES - 1) * stride, end, p, kBase, vBase, kvWidth, slotOf);
      cp_async_wait<STAGES - 1>(); // this thread's copies of tile i are done ...
      __syncwarp();                // ... and every lane's
      const unsigned char *tile = ring + (i % STAGES) * TILE;

      // Scores of positions T + 8n + 2t + {0, 1}, in base-2 units; -inf past the end (whatever the ring holds there).
      float s[4];
#pragma unroll
      for (int n = 0; n < 2; n++) {
        const int row = g + 8 * n;
        u32 kc[KW];
        smem_words(kc, T + row == p ? sK + t * (HD / 4) : reinterpret_cast<const e4m3_t *>(tile + row * ROW + t * (HD / 4)));
        float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int j = 0; j < J; j++)
          mma16816<f16_t>(c, qa[j][0], qa[j][0], qa[j][1], qa[j][1], e4m3x2_to_f16x2(kc[j] & 0xffffu), e4m3x2_to_f16x2(kc[j] >> 16));
#pragma unroll
        for (int e = 0; e < 2; e++) s[2 * n + e] = T + 8 * n + 2 * t + e < end ? __fmul_rn(c[e], qscale) : NEG_INF;
      }
      // V rows 2t, 2t + 1, 2t + 8, 2t + 9 (zeros past the end).
      u32 vc[4][VW];
#pragma unroll
      for (int r = 0; r < 4; r++) {
        const int row = 2 * t + (r & 1) + 8 * (r >> 1);
        smem_words(vc[r], T + row == p ? sV + g * (HD / 8) : reinterpret_cast<const e4m3_t *>(tile + (16 + row) * ROW + g * (HD / 8)));
      }
      __syncwarp(); // every lane's reads of this stage are done: the next issue may refill it

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
      for (int n = 0; n < 2; n++) {
        pb[n] = pack2<f16_t>(exp2f(s[2 * n] - m), exp2f(s[2 * n + 1] - m));
        f16_t lo, hi;
        lo.bits = (u16)(pb[n] & 0xffffu);
        hi.bits = (u16)(pb[n] >> 16);
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
    if (lane == 0) {
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
