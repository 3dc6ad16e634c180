// y = x · Wᵀ for 9–64 rows of x on tensor cores (sm_90), where reading W is still most of the cost: the
// batch-decode counterpart of gemv.cu, with the same segments, RMSNorm and epilogues, so a decoder layer at
// batch 64 is 4 of these plus its attention (cuBLAS at 64 rows reads a 4096² weight at 44% of the card's
// read rate: its tiles leave most SMs idle; PERF-NOTES session 9).
//
// Each warp computes 16 weight rows × 8·T rows of x with mma.m16n8k16 (f32 accumulation): W is the A operand,
// streamed from DRAM straight into registers (no shared memory), x the B operand read through L1 (the 4
// warps of a block walk the same columns of x). The MMA's k order within a 64-column chunk is permuted so
// that both operands load as 16-byte vectors: lane (g, t) holds columns 16t … 16t + 15 of its rows, and k16
// step s of the chunk takes columns 16t + 4s … 16t + 4s + 3 as the logical pairs (2t, 2t + 1) and
// (2t + 8, 2t + 9). A and B use the same permutation, so the dot products are unchanged.
//
// A block (4 warps) takes a tile of 64 weight rows (or 32 gate + 32 up rows, gated); a cluster of S blocks
// splits the tile's columns S ways (split-K, S ≤ 8) so that a 4096-row weight still fills every SM. The
// blocks leave their partial sums in shared memory and each sums a 1/S share of the tile across the cluster
// (distributed shared memory, in rank order: deterministic), then applies the epilogue. RMSNorm: the norm's
// weights are folded into W as it arrives (w·g, rounded to the MMA's input type, as a model rounds its normed
// activations) and Σx² of each row is summed beside the products; the row's 1/rms scales the sums at the end.
#include "common.cuh"

#define SKINNY_THREADS 128
#define SKINNY_TILE 64  // weight rows per block (SKINNY_TILE in src/cuda/skinny-launch.ts)
#define SKINNY_CHUNK 64 // columns per chunk (inF must be a multiple)
#define SKINNY_U 2      // chunks of W a warp keeps in flight (2 × 2 KiB)

// EPI_* and NORM_* as in gemv.cu (src/cuda/linear-launch.ts).
#define EPI_NONE 0
#define EPI_RESIDUAL 1
#define EPI_GATED 2
#define EPI_ACT 3
#define NORM_NONE 0
#define NORM_RMS 1

template <typename T> __device__ __forceinline__ void mma16816(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1);
template <> __device__ __forceinline__ void mma16816<f16_t>(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<bf16_t>(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two f32 as one packed pair of T (round to nearest even), and a packed pair times a packed pair.
template <typename T> __device__ __forceinline__ u32 pack2(float lo, float hi) {
  return (u32)from_f32<T>(lo).bits | ((u32)from_f32<T>(hi).bits << 16);
}
template <typename T> __device__ __forceinline__ u32 mul2(u32 a, u32 b);
template <> __device__ __forceinline__ u32 mul2<f16_t>(u32 a, u32 b) {
  u32 r;
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
template <> __device__ __forceinline__ u32 mul2<bf16_t>(u32 a, u32 b) {
  u32 r;
  asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
// Σ of the squares of a packed pair, added to s.
template <typename T> __device__ __forceinline__ float sq2(u32 p, float s) {
  T lo, hi;
  lo.bits = (u16)(p & 0xffffu);
  hi.bits = (u16)(p >> 16);
  const float a = to_f32(lo), b = to_f32(hi);
  return fmaf(b, b, fmaf(a, a, s));
}

template <typename T> __device__ __forceinline__ uint4 mul4(uint4 w, uint4 g) {
  return make_uint4(mul2<T>(w.x, g.x), mul2<T>(w.y, g.y), mul2<T>(w.z, g.z), mul2<T>(w.w, g.w));
}

// arrive releases and wait acquires by default (the .release/.acquire spellings need PTX 8.0; CUDA 11.8 has 7.8).
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
}
// A float of block `rank`'s shared memory at the address `p` has in this block's.
__device__ __forceinline__ float ld_cluster(const float *p, int rank) {
  u32 local, remote;
  float v;
  asm("{\n\t.reg .u64 t;\n\tcvta.to.shared.u64 t, %1;\n\tcvt.u32.u64 %0, t;\n\t}" : "=r"(local) : "l"(p));
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote));
  return v;
}

// T: tiles of 8 rows of x (rows ≤ 8·T). W is the weight and the activation type (f16 or bf16).
template <int T, typename W>
__device__ void skinny(void *y0, const W *w0, const float *b0, int n0, void *y1, const W *w1, const float *b1, int n1, void *y2,
                       const W *w2, const float *b2, int n2, const W *__restrict__ x, const W *__restrict__ res,
                       const float *__restrict__ normW, float eps, int rows, int inF, int epi, int act, int norm, int yF32, int splits) {
#if __CUDA_ARCH__ >= 900
  constexpr int COLS = 8 * T;
  __shared__ float part[SKINNY_TILE][COLS + 1]; // this block's partial sums, [weight row][row of x]
  __shared__ float ssPart[COLS];                // and its Σx² per row of x (norm)
  grid_dep_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int split = (int)blockIdx.x % splits;
  int tile = (int)blockIdx.x / splits, seg = 0;
  const bool gated = epi == EPI_GATED;
  if (!gated) {
    const int nt0 = (n0 + SKINNY_TILE - 1) / SKINNY_TILE, nt1 = (n1 + SKINNY_TILE - 1) / SKINNY_TILE;
    if (tile >= nt0) {
      tile -= nt0;
      seg = 1;
      if (tile >= nt1) {
        tile -= nt1;
        seg = 2;
      }
    }
  }
  const int n = seg == 0 ? n0 : seg == 1 ? n1 : n2;
  // This warp's 16 weight rows: gated, warps 0–1 take gate rows and 2–3 the same up rows.
  const int o0 = gated ? tile * (SKINNY_TILE / 2) + 16 * (warp & 1) : tile * SKINNY_TILE + 16 * warp;
  const W *wbase = gated ? (warp < 2 ? w0 : w1) : seg == 0 ? w0 : seg == 1 ? w1 : w2;
  const bool okA = o0 + g < n, okB = o0 + g + 8 < n;
  const W *wA = wbase + (i64)(okA ? o0 + g : 0) * inF + 16 * t;
  const W *wB = wbase + (i64)(okB ? o0 + g + 8 : 0) * inF + 16 * t;

  const int nc = inF / SKINNY_CHUNK;
  const int c0 = (int)((i64)split * nc / splits), c1 = (int)((i64)(split + 1) * nc / splits);
  uint4 raw[SKINNY_U][4];
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  auto fetch = [&](int u, int c) {
    if (c < c1) {
      const i64 off = (i64)c * SKINNY_CHUNK;
      raw[u][0] = okA ? ld_stream16(wA + off) : zero;
      raw[u][1] = okA ? ld_stream16(wA + off + 8) : zero;
      raw[u][2] = okB ? ld_stream16(wB + off) : zero;
      raw[u][3] = okB ? ld_stream16(wB + off + 8) : zero;
    }
  };
#pragma unroll
  for (int u = 0; u < SKINNY_U; u++) fetch(u, c0 + u);

  float acc[T][4];
#pragma unroll
  for (int j = 0; j < T; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  float ss[T]; // Σx² of row 8j + g over this lane's columns (tiles j ≡ warp mod 4 only: each warp a quarter)
#pragma unroll
  for (int j = 0; j < T; j++) ss[j] = 0.f;
  const W *xl = x + 16 * t;

  grid_dep_wait(); // weights never change: only x and the residual wait for the kernel before
  for (int c = c0; c < c1; c += SKINNY_U) {
#pragma unroll
    for (int u = 0; u < SKINNY_U; u++) {
      const int cc = c + u;
      if (cc >= c1) break;
      uint4 w[4] = {raw[u][0], raw[u][1], raw[u][2], raw[u][3]};
      fetch(u, cc + SKINNY_U); // the slot is free: keep SKINNY_U chunks in flight
      const i64 col = (i64)cc * SKINNY_CHUNK;
      if (norm == NORM_RMS) {
        float gv[16];
        load_vec<float, 16>(normW + col + 16 * t, gv);
        const uint4 g0 = make_uint4(pack2<W>(gv[0], gv[1]), pack2<W>(gv[2], gv[3]), pack2<W>(gv[4], gv[5]), pack2<W>(gv[6], gv[7]));
        const uint4 g1 = make_uint4(pack2<W>(gv[8], gv[9]), pack2<W>(gv[10], gv[11]), pack2<W>(gv[12], gv[13]), pack2<W>(gv[14], gv[15]));
        w[0] = mul4<W>(w[0], g0);
        w[1] = mul4<W>(w[1], g1);
        w[2] = mul4<W>(w[2], g0);
        w[3] = mul4<W>(w[3], g1);
      }
#pragma unroll
      for (int h = 0; h < 2; h++) { // columns 16t + 8h … + 7: k16 steps 2h and 2h + 1
        uint4 xv[T];
#pragma unroll
        for (int j = 0; j < T; j++) {
          const int r = 8 * j + g;
          xv[j] = r < rows ? __ldg(reinterpret_cast<const uint4 *>(xl + (i64)r * inF + col + 8 * h)) : zero;
          if (norm == NORM_RMS && (j & 3) == warp) ss[j] = sq2<W>(xv[j].w, sq2<W>(xv[j].z, sq2<W>(xv[j].y, sq2<W>(xv[j].x, ss[j]))));
        }
        const uint4 a = w[h], b = w[2 + h];
#pragma unroll
        for (int j = 0; j < T; j++) {
          mma16816<W>(acc[j], a.x, b.x, a.y, b.y, xv[j].x, xv[j].y);
          mma16816<W>(acc[j], a.z, b.z, a.w, b.w, xv[j].z, xv[j].w);
        }
      }
    }
  }

  // Partial sums to shared memory: acc[j] holds rows (g, g + 8) of the warp × rows of x (8j + 2t, + 1).
#pragma unroll
  for (int j = 0; j < T; j++) {
    const int r = 16 * warp + g, col = 8 * j + 2 * t;
    part[r][col] = acc[j][0];
    part[r][col + 1] = acc[j][1];
    part[r + 8][col] = acc[j][2];
    part[r + 8][col + 1] = acc[j][3];
  }
  if (norm == NORM_RMS) {
#pragma unroll
    for (int j = 0; j < T; j++) {
      if ((j & 3) != warp) continue;
      float s = ss[j];
      s += __shfl_xor_sync(0xffffffffu, s, 1);
      s += __shfl_xor_sync(0xffffffffu, s, 2);
      if (t == 0) ssPart[8 * j + g] = s;
    }
  }
  if (splits > 1) cluster_sync();
  else __syncthreads();

  // This block's share of the tile: weight rows [rank · share, (rank + 1) · share) (gated: gate rows, with the
  // same up rows 32 further), summed over the cluster in rank order, each output once.
  const int pairs = gated ? SKINNY_TILE / 2 : SKINNY_TILE;
  const int share = pairs / splits;
  auto total = [&](const float *p) {
    if (splits == 1) return *p;
    float s = 0.f;
    for (int k = 0; k < splits; k++) s += ld_cluster(p, k);
    return s;
  };
  const int tile0 = gated ? tile * (SKINNY_TILE / 2) : tile * SKINNY_TILE;
  for (int i = threadIdx.x; i < share * COLS; i += SKINNY_THREADS) {
    const int pr = split * share + i % share, r = i / share;
    const int o = tile0 + pr;
    if (r >= rows || o >= n) continue;
    float scale = 1.f;
    if (norm == NORM_RMS) scale = 1.f / sqrtf(total(&ssPart[r]) / (float)inF + eps);
    float v = total(&part[pr][r]) * scale;
    const float *bias = gated ? b0 : seg == 0 ? b0 : seg == 1 ? b1 : b2;
    if (bias) v += bias[o];
    if (gated) {
      float u = total(&part[pr + SKINNY_TILE / 2][r]) * scale;
      if (b1) u += b1[o];
      store_out<W>(y0, (i64)r * n0 + o, act_fn(act, v) * u, yF32);
    } else {
      if (epi == EPI_RESIDUAL) v += to_f32(res[(i64)r * n0 + o]);
      else if (epi == EPI_ACT) v = act_fn(act, v);
      store_out<W>(seg == 0 ? y0 : seg == 1 ? y1 : y2, (i64)r * n + o, v, yF32);
    }
  }
  if (splits > 1) cluster_sync(); // no block leaves while the others read its shared memory
#endif
}

// y0..y2 [rows, n0..n2] (W, or f32 when yF32); w0..w2 [n, inF]; b0..b2 [n] f32 or null (n1 = n2 = 0: one
// segment; gated: w0 gate, w1 up, n1 = n0, output y0); x, res [rows, inF] and [rows, n0] in W; normW [inF] f32
// or null. inF a multiple of 64, rows ≤ 8·T. grid: (Σ ceil(n / 64), or ceil(n0 / 32) gated) × splits, in
// clusters of `splits` (1, 2, 4 or 8) along x; block SKINNY_THREADS. MINB: blocks an SM (8 tiles of x hold
// 32 accumulators a lane more: 4 blocks an SM would spill).
#define SKINNY_ENTRY(T, MINB, WS, W)                                                                                                           \
  extern "C" __global__ void __launch_bounds__(SKINNY_THREADS, MINB)                                                                        \
      skinny##T##_##WS(void *y0, const W *w0, const float *b0, int n0, void *y1, const W *w1, const float *b1, int n1, void *y2,      \
                       const W *w2, const float *b2, int n2, const W *x, const W *res, const float *normW, float eps, int rows, int inF, \
                       int epi, int act, int norm, int yF32, int splits) {                                                                 \
    skinny<T, W>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, eps, rows, inF, epi, act, norm, yF32, splits);          \
  }

SKINNY_ENTRY(2, 4, f16, f16_t)
SKINNY_ENTRY(4, 4, f16, f16_t)
SKINNY_ENTRY(8, 3, f16, f16_t)
SKINNY_ENTRY(2, 4, bf16, bf16_t)
SKINNY_ENTRY(4, 4, bf16, bf16_t)
SKINNY_ENTRY(8, 3, bf16, bf16_t)
