// Prompt attention on tensor cores (FlashAttention-2 style) for the 16-bit modes: one block per (tile of
// up to 64 query rows of one sequence, head); 4 warps of 16 rows each. Key tiles of 32 cached positions
// are copied from the paged cache into shared memory by cp.async, two stages deep (the next tile loads
// while this one computes; zero-filled past the last position), S = Q·Kᵀ and O += P·V run as
// mma.m16n8k16 with f32 accumulators, and the softmax is online in registers. Causal and sliding-window
// masks per element; GQA by reading the head's KV head.
//
// tiles [numTiles, 3]: (sequence, first row of the tile in the step, rows in the tile ≤ 64), built by the
// host per step; seqInfo and blockTables as in attention.cu.
#include "common.cuh"

#define FA_THREADS 128
#define FA_BM 64 // query rows per block: 4 warps × 16
#define FA_BN 32 // keys per tile
#define FA_STAGES 2

__device__ __forceinline__ u32 smem_addr(const void *p) {
  u32 a;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
  return a;
}

// 16 bytes global → shared without registers; src_bytes 0 fills the 16 bytes with zeros.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
// Waits until at most `pending` of the committed groups are still in flight.
template <int pending> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(pending) : "memory"); }

template <typename A> struct Mma;
template <> struct Mma<f16_t> {
  static __device__ __forceinline__ void run(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  // Two f32 → one register of two halves, lo in the low 16 bits.
  static __device__ __forceinline__ u32 pack(float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
  }
};
template <> struct Mma<bf16_t> {
  static __device__ __forceinline__ void run(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ u32 pack(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
  }
};

__device__ __forceinline__ u32 ld_u32(const void *p) { return *reinterpret_cast<const u32 *>(p); }

// out, q [rows, heads*D]; caches [slots, kvHeads*D]. grid (numTiles, heads), block (FA_THREADS).
template <typename A, int D>
__device__ void flash_prefill(A *out, const A *q, const A *kCache, const A *vCache, const int *tiles, const int *seqInfo,
                              const int *blockTables, int kvHeads, int blockSize, int window, float scale) {
#if __CUDA_ARCH__ >= 800
  static_assert(D % 16 == 0 && D <= 128, "head sizes of 16..128 in steps of 16");
  constexpr int LD = D + 8; // padded row (halves): 16-byte aligned, and 8 rows land on distinct banks
  __shared__ __align__(16) u16 Ks[FA_STAGES][FA_BN * LD];
  __shared__ __align__(16) u16 Vs[FA_STAGES][FA_BN * LD];
  grid_dep_wait();
  grid_dep_launch();
  const int h = blockIdx.y, heads = gridDim.y;
  const int *tile = tiles + 3 * blockIdx.x;
  const int *info = seqInfo + 4 * tile[0];
  const int rowStart = tile[1], nRows = tile[2];
  const int p0 = info[2] - info[1] + (rowStart - info[0]); // position of the tile's first row
  const int pLast = p0 + nRows - 1;
  const int lo = window > 0 ? max(0, p0 - window + 1) : 0;
  const int *table = blockTables + info[3];
  const int kvWidth = kvHeads * D, kvOff = (h / (heads / kvHeads)) * D;
  const int qWidth = heads * D;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int rA = warp * 16 + g, rB = rA + 8; // this thread's two rows in the tile
  const int pA = p0 + rA, pB = p0 + rB;

  // Q fragments (A operand, row-major 16×16 per k-step), zero for rows past the tile.
  u32 qa[D / 16][4];
  {
    const A *qRowA = q + (i64)(rowStart + rA) * qWidth + h * D;
    const A *qRowB = q + (i64)(rowStart + rB) * qWidth + h * D;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
      qa[ks][0] = rA < nRows ? ld_u32(qRowA + 16 * ks + 2 * t) : 0u;
      qa[ks][1] = rB < nRows ? ld_u32(qRowB + 16 * ks + 2 * t) : 0u;
      qa[ks][2] = rA < nRows ? ld_u32(qRowA + 16 * ks + 8 + 2 * t) : 0u;
      qa[ks][3] = rB < nRows ? ld_u32(qRowB + 16 * ks + 8 + 2 * t) : 0u;
    }
  }
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float mA = NEG_INF, mB = NEG_INF, lA = 0.f, lB = 0.f; // l: this thread's part of the row sum
  const float sl2 = scale * 1.4426950408889634f;        // exp(x·scale) = 2^(x·scale·log2 e)

  // Key tile kt (positions kt .. kt + FA_BN − 1) into stage `st`, zero past pLast.
  auto load = [&](int kt, int st) {
    for (int idx = threadIdx.x; idx < FA_BN * (D / 8); idx += FA_THREADS) {
      const int key = idx / (D / 8), c = idx % (D / 8);
      const int j = kt + key;
      const bool valid = j <= pLast;
      const i64 slot = valid ? (i64)table[j / blockSize] * blockSize + j % blockSize : 0;
      const i64 src = slot * kvWidth + kvOff + 8 * c;
      cp_async16(Ks[st] + key * LD + 8 * c, kCache + src, valid ? 16 : 0);
      cp_async16(Vs[st] + key * LD + 8 * c, vCache + src, valid ? 16 : 0);
    }
    cp_async_commit();
  };
  load(lo, 0);
  for (int kt = lo, st = 0; kt <= pLast; kt += FA_BN, st ^= 1) {
    // Start the next tile's copy into the other stage (its readers finished at the end of the last
    // iteration), then wait for this tile's.
    if (kt + FA_BN <= pLast) {
      load(kt + FA_BN, st ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const u16 *Kt = Ks[st], *Vt = Vs[st];

    // S = Q·Kᵀ for this warp's 16 rows × FA_BN keys: n-tiles of 8 keys.
    float s[FA_BN / 8][4];
#pragma unroll
    for (int j = 0; j < FA_BN / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < D / 16; ks++) {
#pragma unroll
      for (int j = 0; j < FA_BN / 8; j++) {
        const u16 *kr = Kt + (8 * j + g) * LD + 16 * ks + 2 * t;
        Mma<A>::run(s[j], qa[ks], ld_u32(kr), ld_u32(kr + 8));
      }
    }
    // Mask (causal, window, past the tile's last position) and the online softmax, per row.
    float mxA = NEG_INF, mxB = NEG_INF;
#pragma unroll
    for (int j = 0; j < FA_BN / 8; j++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int kp = kt + 8 * j + 2 * t + (e & 1);
        const int qp = e < 2 ? pA : pB;
        const bool ok = kp <= qp && (window <= 0 || kp > qp - window);
        s[j][e] = ok ? s[j][e] * sl2 : NEG_INF;
      }
      mxA = fmaxf(mxA, fmaxf(s[j][0], s[j][1]));
      mxB = fmaxf(mxB, fmaxf(s[j][2], s[j][3]));
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mxA = fmaxf(mxA, __shfl_xor_sync(0xffffffffu, mxA, off));
      mxB = fmaxf(mxB, __shfl_xor_sync(0xffffffffu, mxB, off));
    }
    const float nA = fmaxf(mA, mxA), nB = fmaxf(mB, mxB);
    const float uA = nA == NEG_INF ? 0.f : nA, uB = nB == NEG_INF ? 0.f : nB; // rows with nothing yet stay at 0
    const float cA = exp2f(mA - uA), cB = exp2f(mB - uB);
    mA = nA;
    mB = nB;
    lA *= cA;
    lB *= cB;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
      o[j][0] *= cA;
      o[j][1] *= cA;
      o[j][2] *= cB;
      o[j][3] *= cB;
    }
    u32 pa[FA_BN / 16][4]; // P as A fragments: the S accumulators of two key n-tiles make one k-step
#pragma unroll
    for (int j = 0; j < FA_BN / 8; j++) {
      const float e0 = exp2f(s[j][0] - uA), e1 = exp2f(s[j][1] - uA);
      const float e2 = exp2f(s[j][2] - uB), e3 = exp2f(s[j][3] - uB);
      lA += e0 + e1;
      lB += e2 + e3;
      pa[j / 2][(j & 1) * 2 + 0] = Mma<A>::pack(e0, e1);
      pa[j / 2][(j & 1) * 2 + 1] = Mma<A>::pack(e2, e3);
    }
    // O += P·V: V row-major [key][dim] is the B operand transposed: ldmatrix.trans gives its fragments.
#pragma unroll
    for (int kk = 0; kk < FA_BN / 16; kk++) {
#pragma unroll
      for (int jd = 0; jd < D / 8; jd += 2) {
        const int mi = lane >> 3, rr = lane & 7;
        const u16 *vp = Vt + (16 * kk + (mi & 1) * 8 + rr) * LD + 8 * (jd + (mi >> 1));
        u32 b0, b1, b2, b3;
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                     : "r"(smem_addr(vp)));
        Mma<A>::run(o[jd], pa[kk], b0, b1);
        Mma<A>::run(o[jd + 1], pa[kk], b2, b3);
      }
    }
    __syncthreads(); // every warp is done with stage st before the next iteration refills it
  }
#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    lA += __shfl_xor_sync(0xffffffffu, lA, off);
    lB += __shfl_xor_sync(0xffffffffu, lB, off);
  }
  const float iA = lA > 0.f ? 1.f / lA : 0.f, iB = lB > 0.f ? 1.f / lB : 0.f;
  A *oA = out + (i64)(rowStart + rA) * qWidth + h * D;
  A *oB = out + (i64)(rowStart + rB) * qWidth + h * D;
#pragma unroll
  for (int j = 0; j < D / 8; j++) {
    if (rA < nRows) *reinterpret_cast<u32 *>(oA + 8 * j + 2 * t) = Mma<A>::pack(o[j][0] * iA, o[j][1] * iA);
    if (rB < nRows) *reinterpret_cast<u32 *>(oB + 8 * j + 2 * t) = Mma<A>::pack(o[j][2] * iB, o[j][3] * iB);
  }
#else
  __trap(); // the backend launches this kernel only on sm_80 and newer
#endif
}

#define FLASH_ENTRY(S, A, D)                                                                                                      \
  extern "C" __global__ void __launch_bounds__(FA_THREADS, 3)                                                                       \
      flash_prefill##D##_##S(A *out, const A *q, const A *kCache, const A *vCache, const int *tiles, const int *seqInfo,          \
                             const int *blockTables, int kvHeads, int blockSize, int window, float scale) {                      \
    flash_prefill<A, D>(out, q, kCache, vCache, tiles, seqInfo, blockTables, kvHeads, blockSize, window, scale);                \
  }
#define FLASH_DIMS(S, A) \
  FLASH_ENTRY(S, A, 16)  \
  FLASH_ENTRY(S, A, 32)  \
  FLASH_ENTRY(S, A, 64)  \
  FLASH_ENTRY(S, A, 80)  \
  FLASH_ENTRY(S, A, 96)  \
  FLASH_ENTRY(S, A, 128)

FLASH_DIMS(f16, f16_t)
FLASH_DIMS(bf16, bf16_t)
