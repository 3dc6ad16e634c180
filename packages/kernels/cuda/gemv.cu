// y = x · Wᵀ for 1–8 rows of x, where reading W once is the whole cost: each block streams 4 weight rows
// with 16-byte loads, U loads per row per thread in flight (256 bytes a thread at U = 4), applies them to
// every row of x (x stays in L1; the weight stream bypasses it), and reduces across the block once. The
// epilogue fuses what follows a linear in a decoder layer, so a layer needs 4 of these and little else:
//   - up to 3 weight matrices on one input ("segments": q, k and v in one launch), each with its bias;
//   - a norm of x before the product (RMSNorm or LayerNorm over the whole row): the block accumulates
//     Σx² (and Σx) alongside the dot products, and since the norm is linear per row it is applied after;
//   - the residual add (y = x·Wᵀ + b + res), an activation (y = act(x·Wᵀ + b)), or the gated MLP
//     (y = act(x·Wgᵀ + bg) ⊙ (x·Wuᵀ + bu), gate and up read side by side);
//   - or, for a tensor-parallel rank's row-parallel projection, the push half of the all-reduce after it
//     (EPI_PUSH): each block sends its 4 outputs to every rank's Lamport slots as soon as it has them, so
//     the all-reduce launched after it only polls and sums, and most of the NVLink traffic overlaps the
//     blocks still streaming weights.
// The last pfTail blocks (the last wave) also ask L2 for the first pfBytes of the next GEMV's weights at pf:
// while the wave drains, DRAM has little else to do, and the next GEMV's first blocks then hit L2.
// f32 accumulation throughout; R (compile time) is the most rows of x the entry point takes.
//
// Variants (ZINFER_GEMV, src/cuda/gemv-variant.ts; in the 16-bit modes: roll and occ for 1–2 rows, dense and
// eight for 1, 2, 4 and 8), bit-identical
// (each thread adds its vectors in the same order, the block reduces the same way), so one device run can
// time them against each other:
//   gemvR_*   U = 4, all U loads of a row reissued only after all U are consumed (a latency bubble per round);
//   gemvRr_*  "roll": each slot reissued as soon as it is widened, so U loads a row stay in flight (184 registers
//             since the body is compiled per norm mode: 2 blocks an SM);
//   gemvRo_*  "occ": roll with U = 2 and __launch_bounds__ asking 4 blocks an SM at R ≤ 2 (128 registers
//             at R = 1, nvcc 13, no spills): the 1024-block GEMVs (o, down) run in 2 waves of 528 instead
//             of 2.6 of 396. (8 blocks an SM means 64 registers: ~1 KB of spills.)
//   gemv1d_*  "dense": v1 asking 4 blocks an SM (128 registers; 2 loads a row from 2 rows: GEMV_SMALL_BATCH), so 4 × 32 KB an SM are
//             in flight for rows of one round (4,096 wide at 16 bits). Alone on an H200 it reads the 7B
//             q|k|v, gate|up and LM head at 90–95% of the read rate against 87–93% for v1/occ
//             (bench/results/gemv-rate-h200-s18.json).
//   gemv1e_*  "eight" (no LayerNorm instance, which spilled at 1 row): 8 weight rows a block (WR), 2 loads a row a
//             thread, 4 blocks an SM (128 registers), so a 4,096-row GEMV is one wave of 512 blocks: the 7B's o
//             and down.
// and, not bit-identical to them, gemv8m_* "mma": the tensor cores for 2–8 rows (its own section below).
#include "mma.cuh"
#include "peer-ll.cuh"

#define GEMV_THREADS 128
#define GEMV_WROWS 4  // weight rows per block (GEMV_WROWS in src/cuda/linear-launch.ts)

// Epilogues (EPI_* in src/cuda/linear-launch.ts) and norms (NORM_*).
#define EPI_NONE 0
#define EPI_RESIDUAL 1
#define EPI_GATED 2
#define EPI_ACT 3
#define EPI_PUSH 4 // y0 is not written: the values go to the peer all-reduce's Lamport slots (peer-ll.cuh)
#define NORM_NONE 0
#define NORM_RMS 1
#define NORM_LAYER 2

// Which weight rows this block reads: WR consecutive rows from o0 of segment seg, or (gated) WR/2 gate rows from
// o0 and the same up rows.
template <int WR> __device__ __forceinline__ void gemv_block_rows(int epi, int n0, int n1, int &seg, int &o0) {
  int b = blockIdx.x;
  seg = 0;
  if (epi == EPI_GATED) {
    o0 = WR / 2 * b;
  } else {
    const int nb0 = (n0 + WR - 1) / WR, nb1 = (n1 + WR - 1) / WR;
    if (b >= nb0) {
      b -= nb0;
      seg = 1;
      if (b >= nb1) {
        b -= nb1;
        seg = 2;
      }
    }
    o0 = WR * b;
  }
}

// The bias of the block's output row i (gated: i < WR/2 a gate row, else its up row), or null: past n, or none.
template <int WR>
__device__ __forceinline__ const float *gemv_bias(int epi, int i, int o0, int n, int seg, const float *b0, const float *b1, const float *b2) {
  const int o = epi == EPI_GATED ? o0 + i % (WR / 2) : o0 + i;
  const float *bias = epi == EPI_GATED ? (i < WR / 2 ? b0 : b1) : seg == 0 ? b0 : seg == 1 ? b1 : b2;
  return o < n && bias ? bias + o : nullptr;
}

// The block's outputs fin [WR][R] (weight row, x row; gated: WR/2 gate rows, then their up rows) to y0..y2, with
// the epilogue: thread t stores one output (a gated pair; a row's 4 consecutive pushes). After a barrier.
template <int R, int WR, typename A>
__device__ __forceinline__ void gemv_store(const float (&fin)[WR][R], int t, int rows, int o0, int n0, int n, int seg, int epi, int act, int yF32,
                                           void *y0, void *y1, void *y2, const A *res, const LLPush &push) {
  constexpr int HALF = WR / 2;
  if (epi == EPI_GATED) {
    if (t < HALF * R) {
      const int j = t / R, r = t % R, o = o0 + j;
      if (r < rows && o < n0) store_out<A>(y0, (i64)r * n0 + o, act_fn(act, fin[j][r]) * fin[j + HALF][r], yF32);
    }
  } else if (epi == EPI_PUSH) {
    if (t < rows) { // a thread a row: 4 consecutive outputs at a time (the host pushes only n % 4 == 0)
#pragma unroll
      for (int q = 0; q < WR; q += 4) {
        const float v[4] = {fin[q][t], fin[q + 1][t], fin[q + 2][t], fin[q + 3][t]};
        if (o0 + q < n0) ll_push4<A>(push, v, t * n0 + o0 + q);
      }
    }
  } else if (t < WR * R) {
    const int i = t / R, r = t % R, o = o0 + i;
    if (r < rows && o < n) {
      float val = fin[i][r];
      if (epi == EPI_RESIDUAL) val += to_f32(res[(i64)r * n0 + o]);
      else if (epi == EPI_ACT) val = act_fn(act, val);
      store_out<A>(seg == 0 ? y0 : seg == 1 ? y1 : y2, (i64)r * n + o, val, yF32);
    }
  }
}

// NM: the norm mode (gemv()'s `norm` argument), a template parameter so that the body is compiled once per mode
// (gemv() below picks the instance): the mode tested at run time inside the loop, per 16-byte vector, cost 2–5%
// of the read rate on an H200 (PERF-NOTES, session 18).
template <int R, int U, bool ROLL, int THREADS, int WR, typename W, typename A, int NM>
__device__ void gemv_nm(void *y0, const W *w0, const float *b0, int n0, void *y1, const W *w1, const float *b1, int n1, void *y2,
                     const W *w2, const float *b2, int n2, const A *x, const A *res,
                     const float *__restrict__ normW, const float *__restrict__ normB, float eps, int rows, int inF, int epi,
                     int act, int yF32, const void *pf, int pfBytes, int pfTail, const LLPush &push) {
  static_assert(R >= 1 && R <= 8, "GEMV takes 1 to 8 rows");
  static_assert(THREADS % 32 == 0 && THREADS >= 32, "whole warps");
  static_assert(WR == 4 || WR == 8, "4 or 8 weight rows a block");
  static_assert(WR * R <= THREADS, "a thread a sum in the epilogue");
  constexpr int HALF = WR / 2; // gated: HALF gate rows, then the same HALF up rows
  constexpr int WARPS = THREADS / 32;
  // The block's sums, WR·R of them (≤ 64) in passes of 32 (a warp's transposed reduction), then the norm statistics.
  constexpr int PASSES = (WR * R + 31) / 32, STATS = 32 * PASSES;
  __shared__ float red[WARPS][STATS + 32];
  __shared__ float fin[WR][R];
  grid_dep_launch();
  const int tailStart = (int)gridDim.x - pfTail;
  if (pfTail > 0 && (int)blockIdx.x >= tailStart) l2_prefetch(pf, pfBytes, blockIdx.x - tailStart, pfTail);

  int seg, o0;
  gemv_block_rows<WR>(epi, n0, n1, seg, o0);
  const W *wseg = seg == 0 ? w0 : seg == 1 ? w1 : w2;
  const int n = seg == 0 ? n0 : seg == 1 ? n1 : n2;
  const W *wp[WR];
  bool ok[WR];
#pragma unroll
  for (int i = 0; i < WR; i++) {
    const int o = epi == EPI_GATED ? o0 + i % HALF : o0 + i;
    ok[i] = o < n;
    wp[i] = (epi == EPI_GATED && i >= HALF ? w1 : wseg) + (i64)(ok[i] ? o : 0) * inF;
  }

  float acc[WR][R];
  float ss[R], sx[R], gd[WR], bd[WR]; // norm statistics: Σx², Σx, Σ w·g, Σ w·b
#pragma unroll
  for (int r = 0; r < R; r++) {
    ss[r] = sx[r] = 0.f;
#pragma unroll
    for (int i = 0; i < WR; i++) acc[i][r] = 0.f;
  }
#pragma unroll
  for (int i = 0; i < WR; i++) gd[i] = bd[i] = 0.f;

  constexpr int N = Vec16<W>::N;
  if (inF % N == 0) {
    // Rows of W (and of x) then start 16-byte aligned: allocations are 256-byte aligned.
    const int nv = inF / N;
    constexpr int step = THREADS * U; // U vectors per weight row per thread in flight
    uint4 raw[U][WR];
    auto fetch = [&](int u, int v) {
#pragma unroll
      for (int i = 0; i < WR; i++) raw[u][i] = (ok[i] && v < nv) ? ld_stream16(wp[i] + (i64)v * N) : make_uint4(0u, 0u, 0u, 0u);
    };
    // One 16-byte vector v of each weight row (widened in wf) against every row of x.
    auto consume = [&](int v, float (&wf)[WR][N]) {
      float g[N], gb[N];
      if constexpr (NM != NORM_NONE) {
        load_weight<float, N>(normW + (i64)v * N, g);
        if constexpr (NM == NORM_LAYER) {
          load_weight<float, N>(normB + (i64)v * N, gb);
#pragma unroll
          for (int i = 0; i < WR; i++) {
#pragma unroll
            for (int k = 0; k < N; k++) {
              gd[i] += wf[i][k] * g[k];
              bd[i] += wf[i][k] * gb[k];
            }
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; r++) {
        if (r < rows) {
          float xv[N];
          load_act<A, N>(x + (i64)r * inF + (i64)v * N, xv);
          if constexpr (NM != NORM_NONE) {
#pragma unroll
            for (int k = 0; k < N; k++) {
              ss[r] += xv[k] * xv[k];
              sx[r] += xv[k];
              xv[k] *= g[k];
            }
          }
#pragma unroll
          for (int i = 0; i < WR; i++) {
            float s = 0.f;
#pragma unroll
            for (int k = 0; k < N; k++) s += wf[i][k] * xv[k];
            acc[i][r] += s;
          }
        }
      }
    };
    // Widens and uses the round of vectors from base (U a thread); with ROLL, each slot is refilled with its
    // vector of the next round as soon as it is widened, so U loads a row stay in flight.
    auto useRound = [&](int base) {
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int v = base + u * THREADS;
        if (v >= nv) break;
        float wf[WR][N];
#pragma unroll
        for (int i = 0; i < WR; i++) widen16<W>(raw[u][i], wf[i]);
        if constexpr (ROLL) {
          if (v + step < nv) fetch(u, v + step);
        }
        consume(v, wf);
      }
    };
    // The first round of weight loads is issued before griddepcontrol.wait (weights never change: only x, the
    // residual and the outputs wait for the kernel before), so a dependent launch streams its weights while
    // that kernel drains. The wait sits behind a branch: where it followed the loads in the same basic block,
    // ptxas (CUDA 13) moved every load after it, and no GEMV had weights in flight before its wait (PERF-NOTES,
    // session 19: the 7B layer's chain 109 → 102 µs on an H200).
    if constexpr (!ROLL) { // a round's loads, then their use; the first round's body holds the wait
      for (int base = threadIdx.x; base < nv; base += step) {
#pragma unroll
        for (int u = 0; u < U; u++) fetch(u, base + u * THREADS);
        if (base == (int)threadIdx.x) grid_dep_wait();
        useRound(base);
      }
      if ((int)threadIdx.x >= nv) grid_dep_wait(); // a thread with no vectors still reads res and writes y
    } else {
#pragma unroll
      for (int u = 0; u < U; u++) fetch(u, threadIdx.x + u * THREADS);
      if (rows > 0) grid_dep_wait(); // always taken (no rows: nothing is read or written); the branch keeps the loads before it
      for (int base = threadIdx.x; base < nv; base += step) useRound(base);
    }
  } else {
    grid_dep_wait();
    for (int k = threadIdx.x; k < inF; k += THREADS) {
      float wf[WR];
#pragma unroll
      for (int i = 0; i < WR; i++) wf[i] = ok[i] ? to_f32(wp[i][k]) : 0.f;
      float g = 1.f;
      if constexpr (NM != NORM_NONE) {
        g = normW[k];
        if constexpr (NM == NORM_LAYER) {
#pragma unroll
          for (int i = 0; i < WR; i++) {
            gd[i] += wf[i] * g;
            bd[i] += wf[i] * normB[k];
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; r++) {
        if (r < rows) {
          const float xv = to_f32(x[(i64)r * inF + k]);
          ss[r] += xv * xv;
          sx[r] += xv;
#pragma unroll
          for (int i = 0; i < WR; i++) acc[i][r] += wf[i] * xv * g;
        }
      }
    }
  }

  // Block reduction: each warp folds 32 values at once (lane l ends with value l), then warps add up. (Before
  // the passes, eight at 8 rows, 64 sums, lost its last 32: session 20.)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int p = 0; p < PASSES; p++) {
    float v[32];
#pragma unroll
    for (int j = 0; j < 32; j++) v[j] = 32 * p + j < WR * R ? acc[(32 * p + j) / R][(32 * p + j) % R] : 0.f;
    red[warp][32 * p + lane] = warp_transpose_sum(v);
  }
  if constexpr (NM != NORM_NONE) {
    float v[32];
#pragma unroll
    for (int j = 0; j < 32; j++) v[j] = 0.f;
#pragma unroll
    for (int r = 0; r < R; r++) {
      v[r] = ss[r];
      v[8 + r] = sx[r];
    }
#pragma unroll
    for (int i = 0; i < WR; i++) {
      v[16 + i] = gd[i];
      v[16 + WR + i] = bd[i];
    }
    red[warp][STATS + lane] = warp_transpose_sum(v);
  }
  __syncthreads();
  const int t = threadIdx.x;
  if (t < WR * R) {
    const int i = t / R, r = t % R;
    auto total = [&](int j) {
      float s = 0.f;
#pragma unroll
      for (int w = 0; w < WARPS; w++) s += red[w][j];
      return s;
    };
    float val = total(t);
    if constexpr (NM == NORM_RMS) {
      val *= 1.f / sqrtf(total(STATS + r) / (float)inF + eps);
    } else if constexpr (NM == NORM_LAYER) {
      const float mean = total(STATS + 8 + r) / (float)inF;
      const float var = fmaxf(total(STATS + r) / (float)inF - mean * mean, 0.f);
      val = (val - mean * total(STATS + 16 + i)) * (1.f / sqrtf(var + eps)) + total(STATS + 16 + WR + i);
    }
    if (const float *b = gemv_bias<WR>(epi, i, o0, n, seg, b0, b1, b2)) val += *b; // (ok[i] would index a register array at run time)
    fin[i][r] = val;
  }
  __syncthreads();
  gemv_store<R, WR, A>(fin, t, rows, o0, n0, n, seg, epi, act, yF32, y0, y1, y2, res, push);
}

template <int R, int U, bool ROLL, int THREADS, int WR, typename W, typename A>
__device__ __forceinline__ void gemv(void *y0, const W *w0, const float *b0, int n0, void *y1, const W *w1, const float *b1, int n1, void *y2,
                     const W *w2, const float *b2, int n2, const A *x, const A *res,
                     const float *__restrict__ normW, const float *__restrict__ normB, float eps, int rows, int inF, int epi,
                     int act, int norm, int yF32, const void *pf, int pfBytes, int pfTail, const LLPush &push) {
  if (norm == NORM_NONE) gemv_nm<R, U, ROLL, THREADS, WR, W, A, NORM_NONE>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, normB, eps, rows, inF, epi, act, yF32, pf, pfBytes, pfTail, push);
  else if (norm == NORM_RMS) gemv_nm<R, U, ROLL, THREADS, WR, W, A, NORM_RMS>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, normB, eps, rows, inF, epi, act, yF32, pf, pfBytes, pfTail, push);
  else if constexpr (WR == 8) __trap(); // eight has no LayerNorm instance (it spills there): gemvLaunch never sends one
  else gemv_nm<R, U, ROLL, THREADS, WR, W, A, NORM_LAYER>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, normB, eps, rows, inF, epi, act, yF32, pf, pfBytes, pfTail, push);
}

// y0..y2 [rows, n0..n2] (A, or f32 when yF32); w0..w2 [n, inF] in the weight dtype; b0..b2 [n] f32 or null
// (n1 = n2 = 0: one segment); x, res [rows, inF] and [rows, n0]; normW, normB [inF] f32 or null; pf, pfBytes,
// pfTail: the prefetch of the last pfTail blocks (null, 0, 0: none); llTable .. llSlotBytes: where EPI_PUSH
// sends the outputs (the peer all-reduce's areas, this rank, the ranks, its half and slot bytes; else unused).
// grid (Σ ceil(n / WR), or ceil(n0 / (WR / 2)) when gated), block (T: GEMV_THREADS, or 32 for the one-warp
// entries); rows ≤ R.
// V names the variant (empty, r, o, d, e; w: one warp), U its loads a row in flight, MINB the blocks an SM it asks
// room for, WR its weight rows a block (GEMV_WROWS but for e: gemvBlockRows in src/cuda/gemv-variant.ts).
#define GEMV_ENTRY(R, V, U, ROLL, MINB, T, WR, WS, AS, W, A) \
  extern "C" __global__ void __launch_bounds__(T, MINB)                                                                                 \
      gemv##R##V##_##WS##_##AS(void *y0, const W *w0, const float *b0, int n0, void *y1, const W *w1, const float *b1, int n1, void *y2, \
                               const W *w2, const float *b2, int n2, const A *x, const A *res, const float *normW, const float *normB,   \
                               float eps, int rows, int inF, int epi, int act, int norm, int yF32, const void *pf, int pfBytes,        \
                               int pfTail, const unsigned long long *llTable, int llRank, int llRanks, int llHalfBytes,               \
                               int llSlotBytes) {                                                                                       \
    gemv<R, U, ROLL, T, WR, W, A>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, normB, eps, rows, inF, epi, act, norm, yF32,  \
                              pf, pfBytes, pfTail, LLPush{llTable, llRank, llRanks, llHalfBytes, llSlotBytes});                        \
  }

// Parity mode (f32 activations, weights in any stored dtype) and the 16-bit modes (weights in the
// activation dtype).
#define GEMV_DTYPES(R, V, U, ROLL, MINB) \
  GEMV_ENTRY(R, V, U, ROLL, MINB, GEMV_THREADS, GEMV_WROWS, f32, f32, float, float) \
  GEMV_ENTRY(R, V, U, ROLL, MINB, GEMV_THREADS, GEMV_WROWS, f16, f32, f16_t, float) \
  GEMV_ENTRY(R, V, U, ROLL, MINB, GEMV_THREADS, GEMV_WROWS, bf16, f32, bf16_t, float) \
  GEMV_ENTRY(R, V, U, ROLL, MINB, GEMV_THREADS, GEMV_WROWS, f16, f16, f16_t, f16_t) \
  GEMV_ENTRY(R, V, U, ROLL, MINB, GEMV_THREADS, GEMV_WROWS, bf16, bf16, bf16_t, bf16_t)

GEMV_DTYPES(1, , 4, false, 1)
GEMV_DTYPES(2, , 4, false, 1)
GEMV_DTYPES(4, , 4, false, 1)
GEMV_DTYPES(8, , 4, false, 1)

// roll and occ, for the latency-bound decode of 1 or 2 rows in the 16-bit modes only (each entry point costs
// NVRTC time on every fresh machine; parity mode takes v1 everywhere: gemv-variant.ts).
#define GEMV_VARIANTS_16(R) \
  GEMV_ENTRY(R, r, 4, true, 1, GEMV_THREADS, GEMV_WROWS, f16, f16, f16_t, f16_t) \
  GEMV_ENTRY(R, r, 4, true, 1, GEMV_THREADS, GEMV_WROWS, bf16, bf16, bf16_t, bf16_t) \
  GEMV_ENTRY(R, o, 2, true, 4, GEMV_THREADS, GEMV_WROWS, f16, f16, f16_t, f16_t) \
  GEMV_ENTRY(R, o, 2, true, 4, GEMV_THREADS, GEMV_WROWS, bf16, bf16, bf16_t, bf16_t)

GEMV_VARIANTS_16(1)
GEMV_VARIANTS_16(2)
// dense at 1 row: 4 loads a row a thread (at 2 rows and more, 2: GEMV_SMALL_BATCH below).
GEMV_ENTRY(1, d, 4, false, 4, GEMV_THREADS, GEMV_WROWS, f16, f16, f16_t, f16_t)
GEMV_ENTRY(1, d, 4, false, 4, GEMV_THREADS, GEMV_WROWS, bf16, bf16, bf16_t, bf16_t)
// eight (1 row): 8 weight rows a block with 2 loads a row a thread (dense's 16 loads in flight), 4 blocks an SM,
// so a 4,096-row GEMV (the 7B's o and down) is one wave of 512 blocks instead of 1.9 of 528. The plain kernel
// in that form took 2.6 µs off the 7B layer's GEMV chain on an H200 (bench/results/gemv-chain-rows-h200-s19.json).
GEMV_ENTRY(1, e, 2, false, 4, GEMV_THREADS, 8, f16, f16, f16_t, f16_t)
GEMV_ENTRY(1, e, 2, false, 4, GEMV_THREADS, 8, bf16, bf16, bf16_t, bf16_t)

// Small batches, 2–8 rows: v1 holds 165 / 186 / 254 registers at 2 / 4 / 8 rows, so an SM holds 3 / 2 / 2 of its
// blocks, and the 7B's GEMVs at 4 rows read at 37–43% of the card's rate (H200, session 20). dense and eight
// keep 2 loads a row a thread in flight (the same order of sums as v1) under bounds that fit without spills
// (nvcc 13: 121–168 registers, eight at 8 rows 241–246): dense 4 / 4 / 3 blocks an SM, eight 3 / 3 / 2.
#define GEMV_SMALL_BATCH(R, DMINB, EMINB)                                                             \
  GEMV_ENTRY(R, d, 2, false, DMINB, GEMV_THREADS, GEMV_WROWS, f16, f16, f16_t, f16_t)              \
  GEMV_ENTRY(R, d, 2, false, DMINB, GEMV_THREADS, GEMV_WROWS, bf16, bf16, bf16_t, bf16_t)          \
  GEMV_ENTRY(R, e, 2, false, EMINB, GEMV_THREADS, 8, f16, f16, f16_t, f16_t)                       \
  GEMV_ENTRY(R, e, 2, false, EMINB, GEMV_THREADS, 8, bf16, bf16, bf16_t, bf16_t)
GEMV_SMALL_BATCH(2, 4, 3)
GEMV_SMALL_BATCH(4, 4, 3)
GEMV_SMALL_BATCH(8, 3, 2)

// ---------------------------------------------------------------------------------------------------
// The tensor-core GEMV for 2–8 rows (the `mma` variant: gemv8m_f16_f16, gemv8m_bf16_bf16). At 8 rows the FMA
// entries above need 8 FP32 FMAs a weight element, over half the card's FP32 rate at its read bandwidth, and
// read at 40–48%; mma.sync m16n8k16 (f16/bf16 in, f32 sums) takes the batch's rows as its 8 columns and reads
// the 7B's GEMVs at 81–94% at any of 2–8 rows (H200, bench/results/gemv-mma-h200-s20.json). A block is 16
// weight rows (gated: 8 gate rows and their 8 up rows), its 4 warps take every 4th chunk of 32 inputs, and
// thread (g, t) of a warp (g = lane / 4, t = lane % 4) loads the 16-byte vector t of a chunk of its rows g and
// g + 8 and of x row g. The MMA's 16 inputs {2t, 2t+1, 2t+8, 2t+9} of thread t are that vector's elements
// 0–3, then 4–7 (a second MMA): the same order for the weights and x, so the loads fill the fragments as they
// are. The sums are added in another order than the FMA entries', so this variant is not bit-identical to
// them; a fused RMSNorm multiplies x by its weight and rounds to the activation type before the MMA (as the
// activations between ops are rounded). No LayerNorm instance (gemvLaunch sends those to dense).
// Parameters as gemv()'s (weights in the activation type A; rows ≤ 8; inF a multiple of 8). U: chunks a warp
// has in flight.
template <int U, typename A, int NM>
__device__ void gemv_mma(void *y0, const A *w0, const float *b0, int n0, void *y1, const A *w1, const float *b1, int n1, void *y2,
                         const A *w2, const float *b2, int n2, const A *x, const A *res,
                         const float *__restrict__ normW, float eps, int rows, int inF, int epi, int act, int yF32, const void *pf,
                         int pfBytes, int pfTail, const LLPush &push) {
  constexpr int R = 8, WR = MMA_WR, HALF = WR / 2;
  __shared__ float red[4][WR][R]; // each warp's sums
  __shared__ float sq[4][R];      // each warp's Σx² of each row of x (RMSNorm)
  __shared__ float fin[WR][R];
  grid_dep_launch();
  const int tailStart = (int)gridDim.x - pfTail;
  if (pfTail > 0 && (int)blockIdx.x >= tailStart) l2_prefetch(pf, pfBytes, blockIdx.x - tailStart, pfTail);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

  int seg, o0;
  gemv_block_rows<WR>(epi, n0, n1, seg, o0);
  const A *wseg = seg == 0 ? w0 : seg == 1 ? w1 : w2;
  const int n = seg == 0 ? n0 : seg == 1 ? n1 : n2;
  // This thread's weight rows: the block's g and g + 8 (gated: gate row o0 + g and its up row).
  const int oa = o0 + g, ob = epi == EPI_GATED ? o0 + g : o0 + g + HALF;
  const A *wa = (epi == EPI_GATED ? w0 : wseg) + (i64)(oa < n ? oa : 0) * inF;
  const A *wb = (epi == EPI_GATED ? w1 : wseg) + (i64)(ob < n ? ob : 0) * inF;
  const bool xrow = g < rows;
  const A *xr = x + (i64)(xrow ? g : 0) * inF;
  const int nv = inF / 8; // 16-byte vectors a row
  float d[4] = {0.f, 0.f, 0.f, 0.f}, ss = 0.f;
  if constexpr (NM == NORM_NONE) {
    mma_rows<U, A>(d, wa, wb, xr, xrow, nv, warp, 4, t, true);
  } else {
    // As mma_rows, with x · g rounded to A before each MMA and Σx² alongside. Its x vectors are loaded one
    // before each MMA: loaded together (as mma_rows does) the f16 instance spilled at U = 8, and on the 7B's
    // shapes alone the two read within 1% of each other (bench/results/gemv-mma-engine-h200-s21.json).
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    for (int c0 = warp; 4 * c0 < nv; c0 += 4 * U) {
      uint4 ra[U], rb[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int v = min(4 * (c0 + 4 * u) + t, nv - 1);
        ra[u] = ld_stream16(wa + (i64)v * 8);
        rb[u] = ld_stream16(wb + (i64)v * 8);
      }
      if (c0 == warp) grid_dep_wait();
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int v = 4 * (c0 + 4 * u) + t;
        const uint4 xb = xrow && v < nv ? ld_act16(xr + (i64)v * 8) : zero;
        float xf[8], gf[8];
        widen16<A>(xb, xf);
        load_weight<float, 8>(normW + (i64)min(v, nv - 1) * 8, gf);
#pragma unroll
        for (int k = 0; k < 8; k++) ss += xf[k] * xf[k];
        mma_chunk<A>(d, ra[u], rb[u],
                     make_uint4(pack2<A>(xf[0] * gf[0], xf[1] * gf[1]), pack2<A>(xf[2] * gf[2], xf[3] * gf[3]), pack2<A>(xf[4] * gf[4], xf[5] * gf[5]),
                                pack2<A>(xf[6] * gf[6], xf[7] * gf[7])));
      }
    }
    if (4 * warp >= nv) grid_dep_wait(); // a warp with no chunks still reads res and writes y
  }

  mma_store_sums(red[warp], d, g, t);
  if constexpr (NM == NORM_RMS) {
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    ss += __shfl_xor_sync(0xffffffffu, ss, 2);
    if (t == 0) sq[warp][g] = ss;
  }
  __syncthreads();
  const int tid = threadIdx.x, i = tid / R, r = tid % R; // WR · R = 128 sums, one a thread
  float val = red[0][i][r] + red[1][i][r] + red[2][i][r] + red[3][i][r];
  if constexpr (NM == NORM_RMS) val *= 1.f / sqrtf((sq[0][r] + sq[1][r] + sq[2][r] + sq[3][r]) / (float)inF + eps);
  if (const float *b = gemv_bias<WR>(epi, i, o0, n, seg, b0, b1, b2)) val += *b;
  fin[i][r] = val;
  __syncthreads();
  gemv_store<R, WR, A>(fin, tid, rows, o0, n0, n, seg, epi, act, yF32, y0, y1, y2, res, push);
}

// The entries take gemv()'s parameters (normB, llTable.. as the others); a LayerNorm or inputs not a multiple
// of 8 trap (gemvLaunch never sends them).
#define GEMV_MMA_ENTRY(S, A)                                                                                                           \
  extern "C" __global__ void __launch_bounds__(GEMV_THREADS, 4)                                                                        \
      gemv8m_##S##_##S(void *y0, const A *w0, const float *b0, int n0, void *y1, const A *w1, const float *b1, int n1, void *y2,       \
                       const A *w2, const float *b2, int n2, const A *x, const A *res, const float *normW, const float *normB, float eps, \
                       int rows, int inF, int epi, int act, int norm, int yF32, const void *pf, int pfBytes, int pfTail,               \
                       const unsigned long long *llTable, int llRank, int llRanks, int llHalfBytes, int llSlotBytes) {                \
    const LLPush push{llTable, llRank, llRanks, llHalfBytes, llSlotBytes};                                                           \
    if (inF % 8 != 0 || norm == NORM_LAYER) __trap();                                                                                \
    if (norm == NORM_RMS) gemv_mma<8, A, NORM_RMS>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, eps, rows, inF, epi, act, yF32, pf, pfBytes, pfTail, push); \
    else gemv_mma<8, A, NORM_NONE>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, eps, rows, inF, epi, act, yF32, pf, pfBytes, pfTail, push); \
  }
GEMV_MMA_ENTRY(f16, f16_t)
GEMV_MMA_ENTRY(bf16, bf16_t)

// Narrow rows (inF ≤ GEMV_WARP_MAX_IN in src/cuda/gemv-variant.ts, e.g. GPT-2's 768): one warp a block. A
// 128-thread block leaves threads idle there (768 f16 = 96 vectors a row) and keeps 1 load a row per thread
// in flight; a warp keeps 3 a row (12 a thread), and an SM holds 14 of them. gemv1w_*, gemv2w_*.
GEMV_ENTRY(1, w, 4, false, 1, 32, GEMV_WROWS, f16, f16, f16_t, f16_t)
GEMV_ENTRY(1, w, 4, false, 1, 32, GEMV_WROWS, bf16, bf16, bf16_t, bf16_t)
GEMV_ENTRY(2, w, 4, false, 1, 32, GEMV_WROWS, f16, f16, f16_t, f16_t)
GEMV_ENTRY(2, w, 4, false, 1, 32, GEMV_WROWS, bf16, bf16, bf16_t, bf16_t)
