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
#ifndef SKINNY_WN
#define SKINNY_WN 4 // 8-row MMA tiles of W a warp takes (32 rows)
#endif
#define SKINNY_TILE (4 * 8 * SKINNY_WN) // weight rows per block: 128 (SKINNY_TILE in src/cuda/skinny-launch.ts)
#define SKINNY_CHUNK 64                       // columns per chunk (inF must be a multiple)
#ifndef SKINNY_U
#define SKINNY_U 2 // chunks of W a warp keeps in flight (2 × 4 KiB; 3 was no faster and costs 32 registers)
#endif
#define SKINNY_XSTAGES 2                      // woven chunks of x in shared memory (the next one is woven during this one)
#define SKINNY_XNAT 3                         // chunks of x arriving by cp.async (2 ahead of the one being woven)

// EPI_* and NORM_* as in gemv.cu (src/cuda/linear-launch.ts).
#define EPI_NONE 0
#define EPI_RESIDUAL 1
#define EPI_GATED 2
#define EPI_ACT 3
#define NORM_NONE 0
#define NORM_RMS 1

template <typename T> __device__ __forceinline__ void mma16816(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1);
template <> __device__ __forceinline__ void mma16816<f16_t>(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<bf16_t>(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
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
// T: tiles of 8 rows of x (rows ≤ 8·T); NORM: NORM_NONE or NORM_RMS. W is the weight and activation type.
template <int T, int NORM, typename W>
__device__ void skinny(void *y0, const W *w0, const float *b0, int n0, void *y1, const W *w1, const float *b1, int n1, void *y2,
                       const W *w2, const float *b2, int n2, const W *__restrict__ x, const W *__restrict__ res,
                       const float *__restrict__ normW, float eps, int rows, int inF, int epi, int act, int yF32, int splits) {
#if __CUDA_ARCH__ >= 900
  constexpr int COLS = 8 * T;
  constexpr int XSTAGE = COLS * SKINNY_CHUNK * 2;          // bytes of one chunk of x in shared memory
  // Partial sums received from the cluster (at most 128 + 2·7 rows, see the epilogue) and their Σx².
  constexpr int PART = ((SKINNY_TILE + 14) * (COLS + 1) + 8 * COLS) * 4;
  constexpr int XBYTES = (SKINNY_XSTAGES + SKINNY_XNAT) * XSTAGE;
  constexpr int SMEM = XBYTES > PART ? XBYTES : PART;
  __shared__ __align__(16) unsigned char smem[SMEM];       // x's chunks in flight, then the partial sums
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
  // This warp's 32 weight rows (four 8-row MMA tiles): gated, warps 0–1 take gate rows and 2–3 the same up rows.
  constexpr int NT = SKINNY_WN, MT = T / 2, WROWS = 8 * NT;
  const int o0 = gated ? tile * (SKINNY_TILE / 2) + WROWS * (warp & 1) : tile * SKINNY_TILE + WROWS * warp;
  const W *wbase = gated ? (warp < 2 ? w0 : w1) : seg == 0 ? w0 : seg == 1 ? w1 : w2;
  const W *wp[NT];
  bool ok[NT];
#pragma unroll
  for (int q = 0; q < NT; q++) {
    const int o = o0 + 8 * q + g;
    ok[q] = o < n;
    wp[q] = wbase + (i64)(ok[q] ? o : 0) * inF + 16 * t;
  }

  const int nc = inF / SKINNY_CHUNK;
  const int c0 = (int)((i64)split * nc / splits), c1 = (int)((i64)(split + 1) * nc / splits);
  // raw[u][q][h]: weight row 8q + g of the warp, columns 16t + 8h … + 7 of chunk slot u.
  uint4 raw[SKINNY_U][NT][2];
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  auto fetch = [&](int u, int c) {
    if (c < c1) {
      const i64 off = (i64)c * SKINNY_CHUNK;
#pragma unroll
      for (int q = 0; q < NT; q++) {
#pragma unroll
        for (int h = 0; h < 2; h++) raw[u][q][h] = ok[q] ? ld_stream16(wp[q] + off + 8 * h) : zero;
      }
    }
  };
#pragma unroll
  for (int u = 0; u < SKINNY_U; u++) fetch(u, c0 + u);

  float acc[MT][NT][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int q = 0; q < NT; q++) acc[mt][q][0] = acc[mt][q][1] = acc[mt][q][2] = acc[mt][q][3] = 0.f;
  }

  // x arrives by cp.async in its own layout (SKINNY_XNAT chunks, 2 ahead of the one being woven), then is woven
  // within shared memory into MMA A-fragment order a chunk ahead of its use: thread (row pair 8mt + g', t')
  // takes rows 16mt + g' and + 8, columns 16t' … + 15, and stores the 4 fragments (k16 steps s) that lane
  // (g', t') of every warp then reads as one 16-byte word (columns 16t' + 4s … + 3 of both rows, interleaved
  // as the MMA wants them: no register moves before each MMA). It also sums those rows' squares (norm). Rows
  // past `rows` copy the last row (their sums are never stored).
  constexpr int PAIRS = 8 * MT, WEAVERS = 4 * PAIRS; // row pairs of x; threads that weave them (≤ 128)
  const bool weaver = (int)threadIdx.x < WEAVERS;
  const int sp = (int)threadIdx.x >> 2, st = (int)threadIdx.x & 3; // row pair, column group
  const int smt = sp >> 3, sg = sp & 7;
  float ssA = 0.f, ssB = 0.f;
  unsigned char *nat = smem + SKINNY_XSTAGES * XSTAGE; // the cp.async stages, [row][128 bytes]
  const u32 natBase = (u32)__cvta_generic_to_shared(nat);
  auto copyX = [&](int c) {
    if (c < c1) {
      const int stage = (c - c0) % SKINNY_XNAT;
      for (int p = threadIdx.x; p < COLS * 8; p += SKINNY_THREADS) {
        const int r = p >> 3, part = p & 7;
        const W *src = x + (i64)(r < rows ? r : rows - 1) * inF + (i64)c * SKINNY_CHUNK + 8 * part;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(natBase + stage * XSTAGE + r * 128 + 16 * ((part + r) & 7)), "l"(src) : "memory");
      }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  // Pieces of a row sit rotated by the row (piece p of row r at (p + r) mod 8), so the weavers' reads of 8
  // rows at one column hit distinct banks. Fragment (mt, s) of lane l goes to ((mt · 4 + s) · 32 + l) · 16.
  auto weave = [&](int c, int stage) {
    if (!weaver || c >= c1) return;
    const uint4 *src = reinterpret_cast<const uint4 *>(nat + ((c - c0) % SKINNY_XNAT) * XSTAGE);
    const int rA = 16 * smt + sg, rB = rA + 8;
    uint4 *dst = reinterpret_cast<uint4 *>(smem + stage * XSTAGE) + smt * 4 * 32 + sg * 4 + st;
#pragma unroll
    for (int s2 = 0; s2 < 2; s2++) {
      const uint4 a = src[rA * 8 + ((2 * st + s2 + rA) & 7)], b = src[rB * 8 + ((2 * st + s2 + rB) & 7)];
      dst[(2 * s2) * 32] = make_uint4(a.x, b.x, a.y, b.y);
      dst[(2 * s2 + 1) * 32] = make_uint4(a.z, b.z, a.w, b.w);
      if constexpr (NORM == NORM_RMS) {
        ssA = sq2<W>(a.w, sq2<W>(a.z, sq2<W>(a.y, sq2<W>(a.x, ssA))));
        ssB = sq2<W>(b.w, sq2<W>(b.z, sq2<W>(b.y, sq2<W>(b.x, ssB))));
      }
    }
  };

  grid_dep_wait(); // weights never change: only x and the residual wait for the kernel before
#pragma unroll
  for (int k = 0; k < SKINNY_XNAT; k++) copyX(c0 + k);
  asm volatile("cp.async.wait_group %0;" ::"n"(SKINNY_XNAT - 1) : "memory");
  __syncthreads();
  weave(c0, 0);
  int stage = 0;
  for (int c = c0; c < c1; c += SKINNY_U) {
#pragma unroll
    for (int u = 0; u < SKINNY_U; u++) {
      const int cc = c + u;
      if (cc >= c1) break;
      asm volatile("cp.async.wait_group %0;" ::"n"(SKINNY_XNAT - 2) : "memory"); // chunk cc + 1 has landed
      __syncthreads(); // chunk cc is woven; every warp is done with chunk cc − 1's woven stage and chunk cc's copy
      copyX(cc + SKINNY_XNAT); // into chunk cc's copy stage
      weave(cc + 1, stage ^ 1);
      const uint4 *xs = reinterpret_cast<const uint4 *>(smem + stage * XSTAGE) + lane;
      stage ^= 1;
      if constexpr (NORM == NORM_RMS) {
        float gv[16];
        load_vec<float, 16>(normW + (i64)cc * SKINNY_CHUNK + 16 * t, gv);
        const uint4 gh[2] = {make_uint4(pack2<W>(gv[0], gv[1]), pack2<W>(gv[2], gv[3]), pack2<W>(gv[4], gv[5]), pack2<W>(gv[6], gv[7])),
                             make_uint4(pack2<W>(gv[8], gv[9]), pack2<W>(gv[10], gv[11]), pack2<W>(gv[12], gv[13]), pack2<W>(gv[14], gv[15]))};
#pragma unroll
        for (int q = 0; q < NT; q++) {
#pragma unroll
          for (int h = 0; h < 2; h++) raw[u][q][h] = mul4<W>(raw[u][q][h], gh[h]);
        }
      }
#pragma unroll
      for (int sk = 0; sk < 4; sk++) { // k16 step sk: W pairs (x, y) of half sk / 2 for even sk, (z, w) for odd
        uint4 xa[MT];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) xa[mt] = xs[(mt * 4 + sk) * 32];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
          for (int q = 0; q < NT; q++) {
            const uint4 w = raw[u][q][sk >> 1];
            mma16816<W>(acc[mt][q], xa[mt].x, xa[mt].y, xa[mt].z, xa[mt].w, sk & 1 ? w.z : w.x, sk & 1 ? w.w : w.y);
          }
        }
      }
      fetch(u, cc + SKINNY_U); // the slot is free: keep SKINNY_U chunks of W in flight
    }
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  __syncthreads(); // x's stages become the partial sums

  // The split-K sum: every block pushes its partial sums to the block of the cluster that owns each weight
  // row (rank k owns rows [k·P/S, (k + 1)·P/S) of the tile's P = 128 rows, or of its 64 gate rows with their up
  // rows), as remote shared-memory stores, which nothing waits on (pulling them cost ~40 µs a launch in
  // load latency); after a cluster barrier each block adds what it received in rank order (deterministic)
  // and applies the epilogue. Receive buffer: [source rank][row < perSrc][COLS + 1], then Σx² [source][COLS].
  const int pairs = gated ? SKINNY_TILE / 2 : SKINNY_TILE;
  const int shareMax = (pairs + splits - 1) / splits, perSrc = gated ? 2 * shareMax : shareMax;
  const int p0 = split * pairs / splits, share = (split + 1) * pairs / splits - p0;
  float *recv = reinterpret_cast<float *>(smem);
  float *recvSs = recv + splits * perSrc * (COLS + 1);
  const u32 recvBase = (u32)__cvta_generic_to_shared(recv);
  auto put = [&](int offset, int rank, float v) {
    if (splits == 1) {
      recv[offset] = v;
    } else {
      u32 remote;
      asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(recvBase + 4 * offset), "r"(rank));
      asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(remote), "f"(v) : "memory");
    }
  };
  // Owner and receive-buffer row of each of this lane's 8 weight rows (8q + 2t + e of the warp). Rank k's first
  // row is k·pairs/S, taken as ⌊(k·pairs + ½)·(1/S)⌋ in f32 (exact here: the quotient is at least 1/(2S) from
  // the next integer) since an integer division costs ~20 instructions and S is known only at run time.
  const float invS = 1.f / (float)splits;
  auto firstRow = [&](int k) { return (int)(((float)(k * pairs) + 0.5f) * invS); };
  int owner[NT][2], slot[NT][2];
#pragma unroll
  for (int q = 0; q < NT; q++) {
#pragma unroll
    for (int e = 0; e < 2; e++) {
      const int r = WROWS * warp + 8 * q + 2 * t + e;
      const bool up = gated && r >= SKINNY_TILE / 2;
      const int pr = up ? r - SKINNY_TILE / 2 : r;
      int k = 0, first = 0;
      for (int j = 1; j < splits; j++) {
        const int fj = firstRow(j);
        if (fj <= pr) k = j, first = fj;
      }
      owner[q][e] = k;
      slot[q][e] = (split * perSrc + pr - first + (up ? shareMax : 0)) * (COLS + 1);
    }
  }
  if (splits > 1) cluster_sync(); // every block of the cluster is done with its x stages, now receive buffers
  // acc[mt][q] holds rows of x (16mt + g, + 8) × weight rows (8q + 2t, + 1) of the warp.
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
#pragma unroll
    for (int q = 0; q < NT; q++) {
      const int col = 16 * mt + g;
      put(slot[q][0] + col, owner[q][0], acc[mt][q][0]);
      put(slot[q][1] + col, owner[q][1], acc[mt][q][1]);
      put(slot[q][0] + col + 8, owner[q][0], acc[mt][q][2]);
      put(slot[q][1] + col + 8, owner[q][1], acc[mt][q][3]);
    }
  }
  if constexpr (NORM == NORM_RMS) { // the 4 weavers of a row pair are adjacent lanes; every block needs every Σx²
    ssA += __shfl_xor_sync(0xffffffffu, ssA, 1);
    ssA += __shfl_xor_sync(0xffffffffu, ssA, 2);
    ssB += __shfl_xor_sync(0xffffffffu, ssB, 1);
    ssB += __shfl_xor_sync(0xffffffffu, ssB, 2);
    if (weaver && st == 0) {
      const int off = splits * perSrc * (COLS + 1) + split * COLS + 16 * smt + sg;
      for (int k = 0; k < splits; k++) {
        put(off, k, ssA);
        put(off + 8, k, ssB);
      }
    }
  }
  if (splits > 1) cluster_sync();
  else __syncthreads();

  // This block's share of the tile: rows p0 … p0 + share − 1 (gated: gate rows, with their up rows), 4 outputs
  // a thread at a time so that their residual loads are in flight together.
  const int tile0 = gated ? tile * (SKINNY_TILE / 2) : tile * SKINNY_TILE;
  const float *bias = gated ? b0 : seg == 0 ? b0 : seg == 1 ? b1 : b2;
  auto sum = [&](int lr, int col) {
    float v = 0.f;
    for (int k = 0; k < splits; k++) v += recv[(k * perSrc + lr) * (COLS + 1) + col];
    return v;
  };
  // Output i = r · share + lr (row r of x, weight row p0 + lr); a thread steps i by SKINNY_THREADS, 4 at a time.
  const int count = share * COLS, dr = SKINNY_THREADS / share, dl = SKINNY_THREADS % share;
  int r0 = (int)threadIdx.x / share, l0 = (int)threadIdx.x % share;
  for (int i0 = threadIdx.x; i0 < count; i0 += 4 * SKINNY_THREADS) {
    int rr[4], ll[4];
    float rv[4];
#pragma unroll
    for (int b = 0; b < 4; b++) {
      rr[b] = r0, ll[b] = l0;
      const int o = tile0 + p0 + l0;
      rv[b] = epi == EPI_RESIDUAL && i0 + b * SKINNY_THREADS < count && r0 < rows && o < n ? to_f32(res[(i64)r0 * n0 + o]) : 0.f;
      r0 += dr, l0 += dl;
      if (l0 >= share) l0 -= share, r0++;
    }
#pragma unroll
    for (int b = 0; b < 4; b++) {
      const int lr = ll[b], r = rr[b], o = tile0 + p0 + lr;
      if (i0 + b * SKINNY_THREADS >= count || r >= rows || o >= n) continue;
      float scale = 1.f;
      if constexpr (NORM == NORM_RMS) {
        float s2 = 0.f;
        for (int k = 0; k < splits; k++) s2 += recvSs[k * COLS + r];
        scale = 1.f / sqrtf(s2 / (float)inF + eps);
      }
      float v = sum(lr, r) * scale;
      if (bias) v += bias[o];
      if (gated) {
        float u = sum(lr + shareMax, r) * scale;
        if (b1) u += b1[o];
        store_out<W>(y0, (i64)r * n0 + o, act_fn(act, v) * u, yF32);
      } else {
        if (epi == EPI_RESIDUAL) v += rv[b];
        else if (epi == EPI_ACT) v = act_fn(act, v);
        store_out<W>(seg == 0 ? y0 : seg == 1 ? y1 : y2, (i64)r * n + o, v, yF32);
      }
    }
  }
#endif
}

// y0..y2 [rows, n0..n2] (W, or f32 when yF32); w0..w2 [n, inF]; b0..b2 [n] f32 or null (n1 = n2 = 0: one
// segment; gated: w0 gate, w1 up, n1 = n0, output y0); x, res [rows, inF] and [rows, n0] in W; normW [inF] f32
// or null. inF a multiple of 64, rows ≤ 8·T. grid: (Σ ceil(n / 64), or ceil(n0 / 32) gated) × splits, in
// clusters of `splits` (1, 2, 4 or 8) along x; block SKINNY_THREADS. MINB: blocks an SM (8 tiles of x hold
// 32 accumulators a lane more: 4 blocks an SM would spill).
#define SKINNY_ENTRY(T, NORM, NS, WS, W)                                                                                         \
  extern "C" __global__ void __launch_bounds__(SKINNY_THREADS, 2)                                                                        \
      skinny##T##NS##_##WS(void *y0, const W *w0, const float *b0, int n0, void *y1, const W *w1, const float *b1, int n1, void *y2,  \
                           const W *w2, const float *b2, int n2, const W *x, const W *res, const float *normW, float eps, int rows,    \
                           int inF, int epi, int act, int yF32, int splits) {                                                        \
    skinny<T, NORM, W>(y0, w0, b0, n0, y1, w1, b1, n1, y2, w2, b2, n2, x, res, normW, eps, rows, inF, epi, act, yF32, splits);       \
  }
#define SKINNY_ENTRIES(T, WS, W)            \
  SKINNY_ENTRY(T, NORM_NONE, , WS, W)       \
  SKINNY_ENTRY(T, NORM_RMS, n, WS, W)

SKINNY_ENTRIES(2, f16, f16_t)
SKINNY_ENTRIES(4, f16, f16_t)
SKINNY_ENTRIES(8, f16, f16_t)
SKINNY_ENTRIES(2, bf16, bf16_t)
SKINNY_ENTRIES(4, bf16, bf16_t)
SKINNY_ENTRIES(8, bf16, bf16_t)
