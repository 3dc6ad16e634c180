// The tensor-core pieces of the small-batch GEMVs (gemv.cu's mma variant, moe.cu's mma experts): mma.sync
// m16n8k16 with f16 or bf16 inputs and f32 sums, where 16 weight rows are the MMA's rows and up to 8 rows of
// x its columns. Thread (g, t) of a warp (g = lane / 4, t = lane % 4) loads the 16-byte vector t of a 32-input
// chunk of weight rows g and g + 8 and of x row g; the MMA's inputs {2t, 2t+1, 2t+8, 2t+9} of that thread are
// the vector's elements 0–3, then 4–7 (a second MMA), in the same order for the weights and x, so the loads
// fill the fragments as they are: no shuffles, no shared memory.
#pragma once
#include "common.cuh"

#define MMA_WR 16 // weight rows of a 16 × 8 product (gemvBlockRows in src/cuda/gemv-variant.ts)

template <typename A> __device__ __forceinline__ void mma16816(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1);
template <> __device__ __forceinline__ void mma16816<f16_t>(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<bf16_t>(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <typename A> __device__ __forceinline__ u32 pack2(float lo, float hi) {
  return (u32)from_f32<A>(lo).bits | ((u32)from_f32<A>(hi).bits << 16);
}

// One chunk's two MMAs: weight vectors a (row g) and b (row g + 8), x vector xb (column g).
template <typename A> __device__ __forceinline__ void mma_chunk(float (&d)[4], const uint4 &a, const uint4 &b, const uint4 &xb) {
  mma16816<A>(d, a.x, b.x, a.y, b.y, xb.x, xb.y);
  mma16816<A>(d, a.z, b.z, a.w, b.w, xb.z, xb.w);
}

// A warp's d (rows g and g + 8, x rows 2t and 2t + 1) into its [16][8] of a block's sums in shared memory.
__device__ __forceinline__ void mma_store_sums(float (&red)[MMA_WR][8], const float (&d)[4], int g, int t) {
  red[g][2 * t] = d[0];
  red[g][2 * t + 1] = d[1];
  red[g + 8][2 * t] = d[2];
  red[g + 8][2 * t + 1] = d[3];
}

// A warp's share of a 16 × 8 product over rows of nv 16-byte vectors: weight rows wa (the MMA's row g) and wb
// (g + 8), x row xr (column g; zeros where !xok), chunks warp, warp + warps, ..., U of them a round: every weight
// load of a round issued (a lane past the row's end reads its last vector again, against x = 0), then the round's
// x vectors, then its MMAs. With waitFirst, griddepcontrol.wait follows the first round's weight loads (every
// warp waits once, also one with no chunks), as in gemv.cu. d: rows g and g + 8, x rows 2t and 2t + 1.
template <int U, typename A>
__device__ __forceinline__ void mma_rows(float (&d)[4], const A *wa, const A *wb, const A *xr, bool xok, int nv, int warp, int warps, int t, bool waitFirst) {
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  for (int c0 = warp; 4 * c0 < nv; c0 += warps * U) {
    uint4 ra[U], rb[U], rx[U];
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int v = min(4 * (c0 + warps * u) + t, nv - 1);
      ra[u] = ld_stream16(wa + (i64)v * 8);
      rb[u] = ld_stream16(wb + (i64)v * 8);
    }
    if (waitFirst && c0 == warp) grid_dep_wait();
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int v = 4 * (c0 + warps * u) + t;
      rx[u] = xok && v < nv ? ld_act16(xr + (i64)v * 8) : zero;
    }
#pragma unroll
    for (int u = 0; u < U; u++) mma_chunk<A>(d, ra[u], rb[u], rx[u]);
  }
  if (waitFirst && 4 * warp >= nv) grid_dep_wait();
}
