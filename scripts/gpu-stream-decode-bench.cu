// Can one persistent kernel bring batch-1 decode to the card's read limit? (PERF-NOTES, session 12.) The
// engine's graphed 7B step runs ~160 kernels, each paying a ramp and a drain (~7–9 µs beyond its bytes on an
// H200: 1.42 × the roofline). Here the whole decode step of a Llama-2-7B-shape model (f16 weights, batch 1)
// is ONE kernel: a block per SM, one producer warp streaming that block's slice of every weight matrix, in
// the order the step uses them, into a ring of shared-memory slots through the bulk copy engine
// (cp.async.bulk, completing on mbarriers), and eight consumer warps taking slots in turn. Weights never
// depend on activations, so the producer runs ahead across every phase boundary; the consumers alone wait at
// the grid barriers (x after each residual add, q|k|v before the attention, ...), while DRAM keeps streaming
// the next matrix. Phases a layer: RMSNorm + q|k|v, rotary + KV write + attention (a block a head), o +
// residual, RMSNorm + gate|up, SiLU·up + down + residual; then RMSNorm + LM head.
// Checked against plain kernels (one warp a row, the same roundings) on the same GPU, timed with CUDA events
// against the read bandwidth measured in the same run. Built and run on the GPU machine:
//   nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/stream-decode scripts/gpu-stream-decode-bench.cu && /tmp/stream-decode [out.json]
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "gpu-cuda-check.cuh"

// Llama-2-7B shape.
constexpr int H = 4096, I = 11008, L = 32, NH = 32, HD = 128, V = 32000, MAXPOS = 1024;
constexpr float EPS = 1e-5f;
// Ring geometry, overridable at build time (-DSD_SLOT=8192 -DSD_NSLOT=24): an item is a group of whole rows
// when a row fits a slot, else one row's column chunk of SLOT / 2 inputs; a consumer warp takes a row group
// (all its chunks) in turn, its items in order.
#ifndef SD_SLOT
#define SD_SLOT 24576
#endif
#ifndef SD_NSLOT
#define SD_NSLOT 8
#endif
#ifndef SD_CW
#define SD_CW 8
#endif
// SD_DYNAMIC=1: producers claim row groups of each phase from a global counter as their rings free up (a
// fast SM takes more rows), instead of a fixed slice a block; whole rows a slot only (one item a row group).
#ifndef SD_DYNAMIC
#define SD_DYNAMIC 0
#endif
// SD_STRIDED=1: block b takes row groups b, b + G, b + 2G, ... (all SMs read neighbouring rows at once, as a
// GEMV grid does) instead of one contiguous slice a block.
#ifndef SD_STRIDED
#define SD_STRIDED 0
#endif
// SD_PRODUCERS=P: P lanes of the producer warp issue the copies (lane j the items n ≡ j mod P);
// SD_SPLIT=S: each item's copy as S bulk requests. Both only with fixed rows (not SD_DYNAMIC).
#ifndef SD_PRODUCERS
#define SD_PRODUCERS 1
#endif
#ifndef SD_SPLIT
#define SD_SPLIT 1
#endif
static_assert(SD_NSLOT % SD_PRODUCERS == 0 && SD_PRODUCERS <= 32 && SD_SPLIT >= 1, "each producer lane owns whole slots");
constexpr int CW = SD_CW;               // consumer warps
constexpr int THREADS = (CW + 1) * 32;  // + one producer warp
constexpr int NSLOT = SD_NSLOT;         // ring slots (item n in slot n % NSLOT)
constexpr int SLOT = SD_SLOT;           // bytes
constexpr int XS_BYTES = 22528;         // staged input vector (≤ 11,008 f16), 16-byte aligned
constexpr int ATT_FLOATS = 3 * HD + 64;
constexpr int ATT_PARTS = 4;
constexpr int NG = CW * 2;              // position groups of 16 lanes in the attention
static_assert(H % (CW * 32) == 0 && CW >= 6, "the staging splits H evenly over the consumers");            // blocks a head in the attention phase (flash-decoding parts)
constexpr size_t SMEM = size_t(NSLOT) * SLOT + XS_BYTES + 2 * NSLOT * 8 + ATT_FLOATS * 4 + NSLOT * 8 + (4 * L + 1) * 4;
static_assert(SLOT % 16 == 0 && SLOT / 2 % 8 == 0, "bulk copies move 16-byte multiples");
// Two other geometries built and hung on an H200 in session 12 (16 consumer warps with 24 slots of 8 KiB; 12
// slots of 16 KiB), cause not found: only the measured ones are allowed.
static_assert(CW == 8 && ((SLOT == 24576 && NSLOT == 8) || (SLOT == 8192 && NSLOT == 24)), "unmeasured ring geometry");
// Items of a matrix: rpi rows of `chunk` inputs each, `chunks` items a row group.
struct Items {
  int rpi, chunk, chunks;
};
__device__ __forceinline__ Items itemsOf(int k) {
  if (k * 2 <= SLOT) return {SLOT / (k * 2) > 3 ? 3 : SLOT / (k * 2), k, 1};
  return {1, SLOT / 2, (k + SLOT / 2 - 1) / (SLOT / 2)};
}

struct Params {
  const __half *wqkv, *wo, *wgu, *wd, *wlm;       // per layer, side by side: [L][3H][H], [L][H][H], [L][2I][H], [L][H][I]; [V][H]
  const float *gAttn, *gMlp, *gFinal;             // [L][H], [L][H], [H]
  float *x, *qkv, *attn, *gu, *logits;            // residual stream and phase outputs (f32)
  float *attnPart;                                // [NH][ATT_PARTS][HD + 2]: weighted V, max, sum
  __half *kc, *vc;                                // [L][MAXPOS][H]
  const float *cosT, *sinT;                       // [MAXPOS][HD / 2]
  unsigned *bar;                                  // grid barrier counter, zeroed before each launch
  unsigned *claim;                                // [4L + 1] row groups claimed a phase (SD_DYNAMIC), zeroed likewise
  int pos;                                        // the new token's position
  int flags;                                      // diagnostics (timing only): SKIP_ATTENTION, NO_BARRIERS, NO_MATH
};
enum { SKIP_ATTENTION = 1, NO_BARRIERS = 2, NO_MATH = 4 };

struct Mat {
  const __half *w;
  int rows, k;
};

// Phase ph of the step: 4 a layer (q|k|v, o, gate|up, down), then the LM head (ph == 4L).
__device__ __forceinline__ Mat phaseMat(const Params &p, int ph) {
  if (ph == 4 * L) return {p.wlm, V, H};
  const int l = ph >> 2;
  switch (ph & 3) {
  case 0: return {p.wqkv + size_t(l) * 3 * H * H, 3 * H, H};
  case 1: return {p.wo + size_t(l) * H * H, H, H};
  case 2: return {p.wgu + size_t(l) * 2 * I * H, 2 * I, H};
  default: return {p.wd + size_t(l) * H * I, H, I};
  }
}

__device__ __forceinline__ unsigned sAddr(const void *q) { return unsigned(__cvta_generic_to_shared(q)); }
__device__ __forceinline__ void mbarInit(uint64_t *b, unsigned n) { asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sAddr(b)), "r"(n)); }
__device__ __forceinline__ void mbarExpect(uint64_t *b, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sAddr(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbarArrive(uint64_t *b) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(sAddr(b)) : "memory"); }
__device__ __forceinline__ void mbarWait(uint64_t *b, unsigned parity) {
  asm volatile("{\n .reg .pred p;\nWAIT:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra WAIT;\n}" ::"r"(sAddr(b)), "r"(parity) : "memory");
}
__device__ __forceinline__ bool mbarTry(uint64_t *b, unsigned parity) {
  unsigned ok;
  asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}" : "=r"(ok) : "r"(sAddr(b)), "r"(parity) : "memory");
  return ok != 0;
}
__device__ __forceinline__ void bulkLoad(void *dst, const void *src, unsigned bytes, uint64_t *b) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(sAddr(dst)), "l"(src), "r"(bytes), "r"(sAddr(b))
               : "memory");
}
// Consumers only (the producer warp never joins): named barrier 1 over CW warps.
__device__ __forceinline__ void consumerSync() { asm volatile("bar.sync 1, %0;" ::"n"(CW * 32) : "memory"); }
__device__ __forceinline__ unsigned ldAcquire(const unsigned *q) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(q) : "memory");
  return v;
}
// Every block's consumers arrive once per barrier; the counter only grows (target = blocks × barriers so far).
__device__ __forceinline__ void gridSync(unsigned *bar, unsigned target) {
  consumerSync();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(bar, 1u);
    while (ldAcquire(bar) < target) {
    }
  }
  consumerSync();
}

// 8 weights against 8 inputs already in f32: four short chains, not one of eight (the consumers are few
// warps, so latency counts).
__device__ __forceinline__ float dot8(uint4 w, const float *x) {
  const __half2 *a = reinterpret_cast<const __half2 *>(&w);
  float s[4];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 u = __half22float2(a[i]);
    s[i] = fmaf(u.y, x[2 * i + 1], u.x * x[2 * i]);
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}
// R rows of an item against x: each x vector unpacked once for all R rows.
template <int R> __device__ __forceinline__ void dotRows(const uint4 *w4, const uint4 *x4, int kv, int lane, float *acc) {
#pragma unroll 4
  for (int v = lane; v < kv; v += 32) {
    const uint4 xv = x4[v];
    const __half2 *xh = reinterpret_cast<const __half2 *>(&xv);
    float xf[8];
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const float2 f = __half22float2(xh[i]);
      xf[2 * i] = f.x, xf[2 * i + 1] = f.y;
    }
#pragma unroll
    for (int i = 0; i < R; i++) acc[i] += dot8(w4[i * kv + v], xf);
  }
}
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float siluMul(float g, float u) { return g / (1.f + expf(-g)) * u; }

// Block sum over the consumers (red: CW floats of shared memory).
__device__ float consumerSum(float v, float *red) {
  v = warpSum(v);
  const int w = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) red[w] = v;
  consumerSync();
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < CW; i++) s += red[i];
  consumerSync();
  return s;
}
__device__ float consumerMax(float v, float *red) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int w = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0) red[w] = v;
  consumerSync();
  float s = -INFINITY;
#pragma unroll
  for (int i = 0; i < CW; i++) s = fmaxf(s, red[i]);
  consumerSync();
  return s;
}

// xs = f16(rmsnorm(x) · g): x read through L2 (other blocks wrote it; L1 may hold an older copy).
__device__ void stageNorm(const float *x, const float *g, __half *xs, float *red) {
  constexpr int PER = H / (CW * 32);
  float v[PER], ss = 0.f;
#pragma unroll
  for (int j = 0; j < PER; j++) {
    v[j] = __ldcg(x + threadIdx.x + j * CW * 32);
    ss += v[j] * v[j];
  }
  const float inv = rsqrtf(consumerSum(ss, red) / H + EPS);
#pragma unroll
  for (int j = 0; j < PER; j++) {
    const int i = threadIdx.x + j * CW * 32;
    xs[i] = __float2half(v[j] * inv * g[i]);
  }
}

// The rows [r0, r1) of one matrix, consumed item by item (rpi rows an item), outputs by mode:
// 0 store, 1 add into out (the residual stream).
// SD_DYNAMIC: this warp's items (n, n + CW, ...) until the producer says the phase ended before n. Each
// slot's first row and row count come with it (meta, written before the producer's arrive).
__device__ void consumeClaimed(const Mat &m, int ph, int &n, const uint8_t *slots, uint64_t *full, uint64_t *empty, const int2 *meta,
                               const volatile int *phaseEnd, const __half *xs, float *out, int mode, bool math) {
  const int lane = threadIdx.x & 31, kv = m.k / 8;
  const uint4 *x4 = reinterpret_cast<const uint4 *>(xs);
  for (;; n += CW) {
    const int s = n % NSLOT;
    while (!mbarTry(&full[s], (n / NSLOT) & 1) && phaseEnd[ph] > n) {
    }
    if (phaseEnd[ph] <= n) return;  // item n (if it came) belongs to a later phase
    const int2 mr = meta[s];
    const int r = mr.x, rows = mr.y;
    float acc[3] = {0.f, 0.f, 0.f};
    const uint4 *w4 = reinterpret_cast<const uint4 *>(slots + size_t(s) * SLOT);
    if (math) {
      if (rows == 3) dotRows<3>(w4, x4, kv, lane, acc);
      else if (rows == 2) dotRows<2>(w4, x4, kv, lane, acc);
      else dotRows<1>(w4, x4, kv, lane, acc);
    }
    __syncwarp();
    if (lane == 0) mbarArrive(&empty[s]);
#pragma unroll
    for (int i = 0; i < 3; i++) {
      if (i >= rows) break;
      const float a = warpSum(acc[i]);
      if (lane == 0) out[r + i] = mode ? __ldcg(out + r + i) + a : a;
    }
  }
}

__device__ void consumeMat(const Mat &m, int r0, int r1, int &n, int &unit, const uint8_t *slots, uint64_t *full, uint64_t *empty, const __half *xs,
                           float *out, int mode, bool math) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const Items it = itemsOf(m.k);
  const uint4 *x4 = reinterpret_cast<const uint4 *>(xs);
#if SD_STRIDED
  for (int u = blockIdx.x; u * it.rpi < m.rows; u += gridDim.x, unit++) {
    const int r = u * it.rpi, rows = min(it.rpi, m.rows - r);
    (void)r0, (void)r1;
#else
  for (int r = r0; r < r1; r += it.rpi, unit++) {
    const int rows = min(it.rpi, r1 - r);
#endif
    if (unit % CW != warp) {
      n += it.chunks;
      continue;
    }
    float acc[3] = {0.f, 0.f, 0.f};
    for (int c = 0; c < it.chunks; c++, n++) {
      const int s = n % NSLOT, kv = min(it.chunk, m.k - c * it.chunk) / 8;
      mbarWait(&full[s], (n / NSLOT) & 1);
      const uint4 *w4 = reinterpret_cast<const uint4 *>(slots + size_t(s) * SLOT);
      if (math) {
        if (rows == 3) dotRows<3>(w4, x4 + c * (it.chunk / 8), kv, lane, acc);
        else if (rows == 2) dotRows<2>(w4, x4 + c * (it.chunk / 8), kv, lane, acc);
        else dotRows<1>(w4, x4 + c * (it.chunk / 8), kv, lane, acc);
      }
      __syncwarp();
      if (lane == 0) mbarArrive(&empty[s]);  // the slot is free before the sums: the producer refills sooner
    }
#pragma unroll
    for (int i = 0; i < 3; i++) {
      if (i >= rows) break;
      const float a = warpSum(acc[i]);
      if (lane == 0) out[r + i] = mode ? __ldcg(out + r + i) + a : a;
    }
  }
}

// One part of one head's attention (flash-decoding): rotary on q and k (half-split pairs), then over the
// part's positions an online softmax, 16 positions at a time (16 lanes a position, 8 dimensions a lane, one
// 16-byte load of K and of V each), the 16 groups merged in shared memory; the part writes its (max, sum,
// weighted V) for the o phase's staging to merge. The part holding pos also writes k and v into the cache.
__device__ void attendPart(const Params &p, int l, int h, int part, float *att, float *scratch) {
  float *sq = att, *sk = att + HD, *sv = att + 2 * HD;
  const int t = threadIdx.x, pos = p.pos;
  const int j0 = int(int64_t(pos + 1) * part / ATT_PARTS), j1 = int(int64_t(pos + 1) * (part + 1) / ATT_PARTS);
  const float *q = p.qkv + h * HD, *k = p.qkv + H + h * HD, *v = p.qkv + 2 * H + h * HD;
  const bool last = j1 == pos + 1;
  if (t < HD / 2) {
    const float c = p.cosT[pos * (HD / 2) + t], s = p.sinT[pos * (HD / 2) + t];
    const float q0 = __ldcg(q + t), q1 = __ldcg(q + t + HD / 2);
    sq[t] = q0 * c - q1 * s;
    sq[t + HD / 2] = q1 * c + q0 * s;
    if (last) {  // the cache holds f16: the new position is attended to as stored
      const float k0 = __ldcg(k + t), k1 = __ldcg(k + t + HD / 2);
      sk[t] = __half2float(__float2half(k0 * c - k1 * s));
      sk[t + HD / 2] = __half2float(__float2half(k1 * c + k0 * s));
    }
  } else if (t < HD + HD / 2 && last) {
    sv[t - HD / 2] = __half2float(__float2half(__ldcg(v + t - HD / 2)));
  }
  consumerSync();
  const size_t base = (size_t(l) * MAXPOS) * H + h * HD;
  if (last && t < HD) {
    p.kc[base + size_t(pos) * H + t] = __float2half(sk[t]);
    p.vc[base + size_t(pos) * H + t] = __float2half(sv[t]);
  }
  const int g = t >> 4, e = t & 15;  // group g takes positions j0 + g, j0 + g + NG, ...; lane e dimensions 8e..8e+7
  float qf[8], acc[8], m = -INFINITY, sum = 0.f;
#pragma unroll
  for (int i = 0; i < 8; i++) qf[i] = sq[8 * e + i] * rsqrtf(float(HD)), acc[i] = 0.f;
  // Every lane runs the same trips (the shuffles name the whole warp); lanes past j1 add nothing.
  for (int j = j0 + g; j - g < j1; j += NG) {
    const bool on = j < j1;
    uint4 kr = make_uint4(0, 0, 0, 0), vr = kr;
    if (!on) {
    } else if (j == pos) {
      const float *a = sk + 8 * e, *b = sv + 8 * e;
      __half2 *kh = reinterpret_cast<__half2 *>(&kr), *vh = reinterpret_cast<__half2 *>(&vr);
      for (int i = 0; i < 4; i++) kh[i] = __floats2half2_rn(a[2 * i], a[2 * i + 1]), vh[i] = __floats2half2_rn(b[2 * i], b[2 * i + 1]);
    } else {
      kr = __ldcg(reinterpret_cast<const uint4 *>(p.kc + base + size_t(j) * H) + e);
      vr = __ldcg(reinterpret_cast<const uint4 *>(p.vc + base + size_t(j) * H) + e);
    }
    const __half2 *kh = reinterpret_cast<const __half2 *>(&kr), *vh = reinterpret_cast<const __half2 *>(&vr);
    float sc = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const float2 f = __half22float2(kh[i]);
      sc = fmaf(qf[2 * i], f.x, fmaf(qf[2 * i + 1], f.y, sc));
    }
#pragma unroll
    for (int o = 8; o; o >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
    if (!on) continue;
    const float mNew = fmaxf(m, sc), scale = expf(m - mNew), w = expf(sc - mNew);
    sum = sum * scale + w;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const float2 f = __half22float2(vh[i]);
      acc[2 * i] = acc[2 * i] * scale + w * f.x;
      acc[2 * i + 1] = acc[2 * i + 1] * scale + w * f.y;
    }
    m = mNew;
  }
  // Merge the NG groups: scratch [NG][HD] weighted V, [NG] max, [NG] sum.
  float *sAcc = scratch, *sM = scratch + NG * HD, *sL = sM + NG;
#pragma unroll
  for (int i = 0; i < 8; i++) sAcc[g * HD + 8 * e + i] = acc[i];
  if (e == 0) sM[g] = m, sL[g] = sum;
  consumerSync();
  if (t < HD) {
    float M = -INFINITY;
    for (int i = 0; i < NG; i++) M = fmaxf(M, sM[i]);
    float num = 0.f, den = 0.f;
    for (int i = 0; i < NG; i++) {
      const float c = sM[i] == -INFINITY ? 0.f : expf(sM[i] - M);
      num += sAcc[i * HD + t] * c;
      den += sL[i] * c;
    }
    float *out = p.attnPart + size_t(h * ATT_PARTS + part) * (HD + 2);
    out[t] = num;
    if (t == 0) out[HD] = M, out[HD + 1] = den;
  }
  consumerSync();
}

// The o phase's input: each head's parts merged (a part with no positions has max -inf and sum 0).
__device__ void stageAttention(const Params &p, __half *xs) {
  for (int i = threadIdx.x; i < H; i += CW * 32) {
    const int h = i / HD, d = i % HD;
    const float *part = p.attnPart + size_t(h * ATT_PARTS) * (HD + 2);
    float M = -INFINITY;
#pragma unroll
    for (int q = 0; q < ATT_PARTS; q++) M = fmaxf(M, __ldcg(part + q * (HD + 2) + HD));
    float num = 0.f, den = 0.f;
#pragma unroll
    for (int q = 0; q < ATT_PARTS; q++) {
      const float mq = __ldcg(part + q * (HD + 2) + HD);
      const float c = mq == -INFINITY ? 0.f : expf(mq - M);
      num += __ldcg(part + q * (HD + 2) + d) * c;
      den += __ldcg(part + q * (HD + 2) + HD + 1) * c;
    }
    xs[i] = __float2half(num / den);
  }
}

__global__ void __launch_bounds__(THREADS, 1) streamDecode(Params p) {
  extern __shared__ __align__(128) uint8_t smem[];
  uint8_t *slots = smem;
  __half *xs = reinterpret_cast<__half *>(smem + size_t(NSLOT) * SLOT);
  uint64_t *full = reinterpret_cast<uint64_t *>(smem + size_t(NSLOT) * SLOT + XS_BYTES), *empty = full + NSLOT;
  float *att = reinterpret_cast<float *>(empty + NSLOT), *red = att + ATT_FLOATS - 64;
  int2 *meta = reinterpret_cast<int2 *>(att + ATT_FLOATS);
  int *phaseEnd = reinterpret_cast<int *>(meta + NSLOT);
  static_assert(XS_BYTES >= (NG * HD + 2 * NG) * 4, "the attention merges its groups in the staging buffer");
  const int G = gridDim.x, b = blockIdx.x;
  if (threadIdx.x == 0) {
    for (int s = 0; s < NSLOT; s++) {
      mbarInit(&full[s], 1);
      mbarInit(&empty[s], 1);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  for (int i = threadIdx.x; i <= 4 * L; i += blockDim.x) phaseEnd[i] = 0x7fffffff;
  __syncthreads();

  if (threadIdx.x >= CW * 32) {  // producer: every item of every phase, in order, never waiting on activations
    const int lane = threadIdx.x - CW * 32;
    if (lane >= (SD_DYNAMIC ? 1 : SD_PRODUCERS)) return;
    int n = 0;
#if SD_DYNAMIC
    for (int ph = 0; ph <= 4 * L; ph++) {
      const Mat m = phaseMat(p, ph);
      const Items it = itemsOf(m.k);
      const int units = (m.rows + it.rpi - 1) / it.rpi;
      unsigned next = atomicAdd(p.claim + ph, 1u);
      for (;; n++) {
        const unsigned u = next;
        if (u >= unsigned(units)) break;
        next = atomicAdd(p.claim + ph, 1u);  // the next claim's round trip overlaps this item's issue
        const int s = n % NSLOT, r = int(u) * it.rpi, rows = min(it.rpi, m.rows - r);
        if (n >= NSLOT) mbarWait(&empty[s], ((n / NSLOT) - 1) & 1);
        meta[s] = make_int2(r, rows);
        const unsigned bytes = unsigned(rows) * m.k * 2;
        mbarExpect(&full[s], bytes);  // its arrive releases meta[s] to the consumer
        bulkLoad(slots + size_t(s) * SLOT, m.w + size_t(r) * m.k, bytes, &full[s]);
      }
      *reinterpret_cast<volatile int *>(phaseEnd + ph) = n;
    }
#else
    for (int ph = 0; ph <= 4 * L; ph++) {
      const Mat m = phaseMat(p, ph);
      const int r0 = int(int64_t(m.rows) * b / G), r1 = int(int64_t(m.rows) * (b + 1) / G);
      const Items it = itemsOf(m.k);
#if SD_STRIDED
      for (int u = b; u * it.rpi < m.rows; u += G) {
        const int r = u * it.rpi, rows = min(it.rpi, m.rows - r);
        (void)r0, (void)r1;
#else
      for (int r = r0; r < r1; r += it.rpi) {
        const int rows = min(it.rpi, r1 - r);
#endif
        for (int c = 0; c < it.chunks; c++, n++) {
          if (n % SD_PRODUCERS != lane) continue;
          const int s = n % NSLOT;
          if (n >= NSLOT) mbarWait(&empty[s], ((n / NSLOT) - 1) & 1);
          const unsigned bytes = unsigned(rows) * min(it.chunk, m.k - c * it.chunk) * 2;
          mbarExpect(&full[s], bytes);
          const unsigned piece = (bytes / SD_SPLIT + 15) & ~15u;
          const uint8_t *src = reinterpret_cast<const uint8_t *>(m.w + size_t(r) * m.k + size_t(c) * it.chunk);
          for (unsigned o = 0; o < bytes; o += piece) bulkLoad(slots + size_t(s) * SLOT + o, src + o, min(piece, bytes - o), &full[s]);
        }
      }
    }
#endif
    return;
  }

#if SD_DYNAMIC
  int n = threadIdx.x >> 5;  // this warp's next item
#else
  int n = 0, unit = 0;  // the items and row groups seen so far
#endif
  unsigned barriers = 0;
  const auto sync = [&] {
    if (!(p.flags & NO_BARRIERS)) gridSync(p.bar, unsigned(G) * ++barriers);
  };
  for (int ph = 0; ph <= 4 * L; ph++) {
    const int l = ph >> 2, kind = ph == 4 * L ? 4 : (ph & 3);
    const Mat m = phaseMat(p, ph);
    const int r0 = int(int64_t(m.rows) * b / G), r1 = int(int64_t(m.rows) * (b + 1) / G);
    if (kind == 0 || kind == 2 || kind == 4) {
      stageNorm(p.x, kind == 0 ? p.gAttn + l * H : kind == 2 ? p.gMlp + l * H : p.gFinal, xs, red);
    } else if (kind == 1) {
      stageAttention(p, xs);
    } else {
      for (int i = threadIdx.x; i < I; i += CW * 32) xs[i] = __float2half(siluMul(__ldcg(p.gu + i), __ldcg(p.gu + I + i)));
    }
    consumerSync();
    float *out = kind == 0 ? p.qkv : kind == 2 ? p.gu : kind == 4 ? p.logits : p.x;
#if SD_DYNAMIC
    (void)r0, (void)r1;
    consumeClaimed(m, ph, n, slots, full, empty, meta, phaseEnd, xs, out, kind == 1 || kind == 3, !(p.flags & NO_MATH));
#else
    consumeMat(m, r0, r1, n, unit, slots, full, empty, xs, out, kind == 1 || kind == 3, !(p.flags & NO_MATH));
#endif
    if (kind == 4) break;
    sync();
    if (kind == 0) {  // the attention between q|k|v and o: a block a head
      if (!(p.flags & SKIP_ATTENTION))
        for (int w = b; w < NH * ATT_PARTS; w += G) attendPart(p, l, w / ATT_PARTS, w % ATT_PARTS, att, reinterpret_cast<float *>(xs));
      sync();
    }
  }
}

// ---- reference: plain kernels, the same roundings ----
__global__ void refNorm(const float *x, const float *g, __half *xs, int k) {
  __shared__ float red[32];
  float ss = 0.f;
  for (int i = threadIdx.x; i < k; i += blockDim.x) ss += x[i] * x[i];
  ss = warpSum(ss);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  float s = 0.f;
  for (int i = 0; i < int(blockDim.x / 32); i++) s += red[i];
  const float inv = rsqrtf(s / k + EPS);
  for (int i = threadIdx.x; i < k; i += blockDim.x) xs[i] = __float2half(x[i] * inv * g[i]);
}
__global__ void refGemv(const __half *w, int rows, int k, const __half *xs, float *out, int add) {
  const int r = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= rows) return;
  float a = 0.f;
  for (int i = lane; i < k; i += 32) a += __half2float(w[size_t(r) * k + i]) * __half2float(xs[i]);
  a = warpSum(a);
  if (lane == 0) out[r] = add ? out[r] + a : a;
}
__global__ void refToHalf(const float *a, __half *xs, int k) {
  for (int i = threadIdx.x; i < k; i += blockDim.x) xs[i] = __float2half(a[i]);
}
__global__ void refAct(const float *gu, __half *xs) {
  for (int i = threadIdx.x; i < I; i += blockDim.x) xs[i] = __float2half(siluMul(gu[i], gu[I + i]));
}
__global__ void refAttention(Params p, int l) {  // a block of HD threads a head
  __shared__ float sq[HD], sc[MAXPOS];
  const int h = blockIdx.x, d = threadIdx.x, pos = p.pos;
  const float *q = p.qkv + h * HD, *k = p.qkv + H + h * HD, *v = p.qkv + 2 * H + h * HD;
  const size_t base = (size_t(l) * MAXPOS) * H + h * HD;
  const int j = d & (HD / 2 - 1);
  const float c = p.cosT[pos * (HD / 2) + j], s = p.sinT[pos * (HD / 2) + j];
  const bool lo = d < HD / 2;
  const float qr = lo ? q[d] * c - q[d + HD / 2] * s : q[d] * c + q[d - HD / 2] * s;
  const float kr = lo ? k[d] * c - k[d + HD / 2] * s : k[d] * c + k[d - HD / 2] * s;
  sq[d] = qr;
  p.kc[base + size_t(pos) * H + d] = __float2half(kr);
  p.vc[base + size_t(pos) * H + d] = __float2half(v[d]);
  __syncthreads();
  for (int t = d; t <= pos; t += HD) {
    float a = 0.f;
    for (int e = 0; e < HD; e++) a += sq[e] * __half2float(p.kc[base + size_t(t) * H + e]);
    sc[t] = a * rsqrtf(float(HD));
  }
  __syncthreads();
  float mx = -INFINITY, sum = 0.f;
  for (int t = 0; t <= pos; t++) mx = fmaxf(mx, sc[t]);
  for (int t = 0; t <= pos; t++) sum += expf(sc[t] - mx);
  float acc = 0.f;
  for (int t = 0; t <= pos; t++) acc += expf(sc[t] - mx) * __half2float(p.vc[base + size_t(t) * H + d]);
  p.attn[h * HD + d] = acc / sum;
}

static void refStep(const Params &p, __half *xs) {
  auto gemv = [&](const __half *w, int rows, int k, float *out, int add) { refGemv<<<(rows + 7) / 8, 256>>>(w, rows, k, xs, out, add); };
  for (int l = 0; l < L; l++) {
    refNorm<<<1, 1024>>>(p.x, p.gAttn + l * H, xs, H);
    gemv(p.wqkv + size_t(l) * 3 * H * H, 3 * H, H, p.qkv, 0);
    refAttention<<<NH, HD>>>(p, l);
    refToHalf<<<1, 1024>>>(p.attn, xs, H);
    gemv(p.wo + size_t(l) * H * H, H, H, p.x, 1);
    refNorm<<<1, 1024>>>(p.x, p.gMlp + l * H, xs, H);
    gemv(p.wgu + size_t(l) * 2 * I * H, 2 * I, H, p.gu, 0);
    refAct<<<1, 1024>>>(p.gu, xs);
    gemv(p.wd + size_t(l) * H * I, H, I, p.x, 1);
  }
  refNorm<<<1, 1024>>>(p.x, p.gFinal, xs, H);
  gemv(p.wlm, V, H, p.logits, 0);
  CUDA(cudaGetLastError());
}

// ---- set-up ----
__device__ __forceinline__ float hashUniform(uint64_t i, uint32_t seed) {  // [-1, 1)
  uint64_t z = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (2.f / 16777216.f) - 1.f;
}
__global__ void fillHalf(__half *a, size_t n, float scale, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) a[i] = __float2half(hashUniform(i, seed) * scale);
}
__global__ void fillFloat(float *a, size_t n, float base, float scale, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) a[i] = base + hashUniform(i, seed) * scale;
}
__global__ void readBandwidth(const uint4 *a, size_t n, unsigned *sink) {
  uint32_t acc = 0;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const uint4 a0 = __ldcs(a + i), a1 = __ldcs(a + i + stride), a2 = __ldcs(a + i + 2 * stride), a3 = __ldcs(a + i + 3 * stride);
    acc ^= a0.x ^ a1.y ^ a2.z ^ a3.w;
  }
  for (; i < n; i += stride) acc ^= __ldcs(a + i).x;
  if (acc == 0x12345678u) *sink = acc;
}

template <typename T> static T *dalloc(size_t n) {
  T *p;
  CUDA(cudaMalloc(&p, n * sizeof(T)));
  return p;
}

int main(int argc, char **argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line: a run cut short still shows how far it got
  cudaDeviceProp prop;
  CUDA(cudaGetDeviceProperties(&prop, 0));
  const int G = prop.multiProcessorCount;
  printf("ring: %d slots of %d B, %d consumer warps, %s rows, %d producer lanes, %d copies a slot\n", NSLOT, SLOT, CW, SD_DYNAMIC ? "claimed" : SD_STRIDED ? "strided" : "sliced", SD_PRODUCERS, SD_SPLIT);
  printf("device %s, %d SMs, %zu B shared memory a block (opt-in); kernel needs %zu\n", prop.name, G, prop.sharedMemPerBlockOptin, SMEM);
  if (SMEM > prop.sharedMemPerBlockOptin) return 1;

  const size_t nQkv = size_t(L) * 3 * H * H, nO = size_t(L) * H * H, nGu = size_t(L) * 2 * I * H, nD = size_t(L) * H * I, nLm = size_t(V) * H;
  const size_t weightBytes = 2 * (nQkv + nO + nGu + nD + nLm);
  Params p{};
  __half *wqkv = dalloc<__half>(nQkv), *wo = dalloc<__half>(nO), *wgu = dalloc<__half>(nGu), *wd = dalloc<__half>(nD), *wlm = dalloc<__half>(nLm);
  fillHalf<<<4096, 256>>>(wqkv, nQkv, sqrtf(3.f / H), 1);
  fillHalf<<<4096, 256>>>(wo, nO, sqrtf(3.f / H), 2);
  fillHalf<<<4096, 256>>>(wgu, nGu, sqrtf(3.f / H), 3);
  fillHalf<<<4096, 256>>>(wd, nD, sqrtf(3.f / I), 4);
  fillHalf<<<4096, 256>>>(wlm, nLm, sqrtf(3.f / H), 5);
  float *gAttn = dalloc<float>(size_t(L) * H), *gMlp = dalloc<float>(size_t(L) * H), *gFinal = dalloc<float>(H);
  fillFloat<<<256, 256>>>(gAttn, size_t(L) * H, 1.f, 0.1f, 6);
  fillFloat<<<256, 256>>>(gMlp, size_t(L) * H, 1.f, 0.1f, 7);
  fillFloat<<<16, 256>>>(gFinal, H, 1.f, 0.1f, 8);
  float *x0 = dalloc<float>(H);
  fillFloat<<<16, 256>>>(x0, H, 0.f, 1.f, 9);
  const size_t nKv = size_t(L) * MAXPOS * H;
  __half *kc0 = dalloc<__half>(nKv), *vc0 = dalloc<__half>(nKv);
  fillHalf<<<4096, 256>>>(kc0, nKv, 1.f, 10);
  fillHalf<<<4096, 256>>>(vc0, nKv, 1.f, 11);
  std::vector<float> hc(MAXPOS * HD / 2), hs(MAXPOS * HD / 2);
  for (int t = 0; t < MAXPOS; t++)
    for (int j = 0; j < HD / 2; j++) {
      const double a = t * std::pow(10000.0, -2.0 * j / HD);
      hc[t * HD / 2 + j] = float(std::cos(a));
      hs[t * HD / 2 + j] = float(std::sin(a));
    }
  float *cosT = dalloc<float>(hc.size()), *sinT = dalloc<float>(hs.size());
  CUDA(cudaMemcpy(cosT, hc.data(), hc.size() * 4, cudaMemcpyHostToDevice));
  CUDA(cudaMemcpy(sinT, hs.data(), hs.size() * 4, cudaMemcpyHostToDevice));
  p.wqkv = wqkv, p.wo = wo, p.wgu = wgu, p.wd = wd, p.wlm = wlm, p.gAttn = gAttn, p.gMlp = gMlp, p.gFinal = gFinal;
  p.x = dalloc<float>(H), p.qkv = dalloc<float>(3 * H), p.attn = dalloc<float>(H), p.gu = dalloc<float>(2 * I), p.logits = dalloc<float>(V);
  p.attnPart = dalloc<float>(size_t(NH) * ATT_PARTS * (HD + 2));
  p.kc = dalloc<__half>(nKv), p.vc = dalloc<__half>(nKv), p.cosT = cosT, p.sinT = sinT, p.bar = dalloc<unsigned>(1);
  p.claim = dalloc<unsigned>(4 * L + 1);
  __half *xsRef = dalloc<__half>(I);
  unsigned *sink = dalloc<unsigned>(1);
  CUDA(cudaFuncSetAttribute(streamDecode, cudaFuncAttributeMaxDynamicSharedMemorySize, int(SMEM)));
  int perSm = 0;
  CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, streamDecode, THREADS, SMEM));
  if (perSm < 1) {
    fprintf(stderr, "the kernel does not fit an SM\n");
    return 1;
  }
  CUDA(cudaDeviceSynchronize());

  // Read bandwidth: 2 GiB of the weights, 16-byte streaming loads, best of 10.
  cudaEvent_t e0, e1;
  CUDA(cudaEventCreate(&e0));
  CUDA(cudaEventCreate(&e1));
  const size_t bwBytes = size_t(2) << 30;
  float bwBest = 1e9f;
  for (int i = 0; i < 11; i++) {
    CUDA(cudaEventRecord(e0));
    readBandwidth<<<G * 8, 512>>>(reinterpret_cast<const uint4 *>(wgu), bwBytes / 16, sink);
    CUDA(cudaEventRecord(e1));
    CUDA(cudaEventSynchronize(e1));
    float ms;
    CUDA(cudaEventElapsedTime(&ms, e0, e1));
    if (i) bwBest = std::min(bwBest, ms);
  }
  const double readGBs = bwBytes / (bwBest * 1e-3) / 1e9;
  const double limitMs = weightBytes / (readGBs * 1e9) * 1e3;
  printf("read bandwidth %.1f GB/s; weights streamed a token %.3f GB; limit %.3f ms\n", readGBs, weightBytes / 1e9, limitMs);

  auto reset = [&] {
    CUDA(cudaMemcpyAsync(p.x, x0, H * 4, cudaMemcpyDeviceToDevice));
    CUDA(cudaMemsetAsync(p.bar, 0, 4));
    CUDA(cudaMemsetAsync(p.claim, 0, (4 * L + 1) * 4));
  };
  // Cooperative: every block must be resident at once (the grid barriers); the launch fails rather than hangs.
  auto launch = [&] {
    void *args[] = {&p};
    CUDA(cudaLaunchCooperativeKernel(reinterpret_cast<void *>(streamDecode), dim3(G), dim3(THREADS), args, SMEM, 0));
  };

  FILE *json = argc > 1 ? fopen(argv[1], "w") : nullptr;
  if (json) fprintf(json, "{\n  \"slots\": %d, \"slot_bytes\": %d, \"consumer_warps\": %d, \"card\": \"%s\", \"sms\": %d, \"read_gb_per_s\": %.1f, \"weight_bytes\": %zu, \"limit_ms\": %.4f,\n  \"runs\": [", NSLOT, SLOT, CW, prop.name, G, readGBs, weightBytes, limitMs);
  bool ok = true;
  const int positions[] = {64, 512};
  for (int pi = 0; pi < 2; pi++) {
    p.pos = positions[pi];
    // Correctness: the reference step and the kernel from the same x and caches.
    std::vector<float> ref(V), got(V), xr(H), xg(H);
    CUDA(cudaMemcpy(p.kc, kc0, nKv * 2, cudaMemcpyDeviceToDevice));
    CUDA(cudaMemcpy(p.vc, vc0, nKv * 2, cudaMemcpyDeviceToDevice));
    reset();
    refStep(p, xsRef);
    CUDA(cudaDeviceSynchronize());
    CUDA(cudaMemcpy(ref.data(), p.logits, V * 4, cudaMemcpyDeviceToHost));
    CUDA(cudaMemcpy(xr.data(), p.x, H * 4, cudaMemcpyDeviceToHost));
    CUDA(cudaMemcpy(p.kc, kc0, nKv * 2, cudaMemcpyDeviceToDevice));
    CUDA(cudaMemcpy(p.vc, vc0, nKv * 2, cudaMemcpyDeviceToDevice));
    CUDA(cudaMemset(p.logits, 0, V * 4));
    reset();
    launch();
    CUDA(cudaGetLastError());
    CUDA(cudaDeviceSynchronize());
    CUDA(cudaMemcpy(got.data(), p.logits, V * 4, cudaMemcpyDeviceToHost));
    CUDA(cudaMemcpy(xg.data(), p.x, H * 4, cudaMemcpyDeviceToHost));
    double maxRef = 0, maxDiff = 0, xRef = 0, xDiff = 0;
    int argRef = 0, argGot = 0;
    for (int i = 0; i < V; i++) {
      maxRef = std::max(maxRef, double(std::fabs(ref[i])));
      maxDiff = std::max(maxDiff, double(std::fabs(ref[i] - got[i])));
      if (ref[i] > ref[argRef]) argRef = i;
      if (got[i] > got[argGot]) argGot = i;
    }
    for (int i = 0; i < H; i++) {
      xRef = std::max(xRef, double(std::fabs(xr[i])));
      xDiff = std::max(xDiff, double(std::fabs(xr[i] - xg[i])));
    }
    const double rel = maxDiff / std::max(maxRef, 1e-30), xRel = xDiff / std::max(xRef, 1e-30);
    const bool pass = std::isfinite(rel) && rel <= 1e-2 && xRel <= 1e-2 && argRef == argGot;
    ok = ok && pass;
    printf("pos %d: correctness %s: logits max |diff| / max |ref| %.2e, final x %.2e, argmax %d / %d\n", p.pos, pass ? "passed" : "FAILED", rel, xRel, argRef, argGot);

    // Time: 30 launches (after 5), each from the same x; events around the kernel alone. At the first
    // position, also the diagnostic variants (wrong results; where the time goes).
    for (int flags : {0, int(SKIP_ATTENTION), SKIP_ATTENTION | NO_BARRIERS, SKIP_ATTENTION | NO_BARRIERS | NO_MATH}) {
    if (pi && flags) break;
    p.flags = flags;
    std::vector<float> ms;
    for (int i = 0; i < 35; i++) {
      reset();
      CUDA(cudaEventRecord(e0));
      launch();
      CUDA(cudaEventRecord(e1));
      CUDA(cudaEventSynchronize(e1));
      float t;
      CUDA(cudaEventElapsedTime(&t, e0, e1));
      if (i >= 5) ms.push_back(t);
    }
    CUDA(cudaGetLastError());
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2], best = ms[0];
    printf("pos %d flags %d: stream decode %.4f ms median, %.4f best = %.3f x limit %.3f ms (%.1f%% of read bandwidth)\n", p.pos, flags, med, best, med / limitMs,
           limitMs, 100.0 * limitMs / med);
    if (json)
      fprintf(json, "%s\n    {\"pos\": %d, \"flags\": %d, \"correct\": %s, \"logits_rel_diff\": %.3e, \"x_rel_diff\": %.3e, \"median_ms\": %.4f, \"best_ms\": %.4f, \"over_limit\": %.4f}",
              pi || flags ? "," : "", p.pos, flags, flags ? "null" : pass ? "true" : "false", rel, xRel, med, best, med / limitMs);
    }
    p.flags = 0;
  }
  if (json) {
    fprintf(json, "\n  ]\n}\n");
    fclose(json);
  }
  return ok ? 0 : 2;
}
