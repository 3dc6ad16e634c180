// Shared device helpers for every zinfer kernel: storage types, conversions to and from f32, 16-byte
// vector loads and stores, activations, warp/block reductions and programmatic-dependent-launch hooks.
//
// Kernels are templates on the weight type W and the activation type A; their `extern "C"` entry points
// are made by function-like macros per dtype (`rms_norm_bf16`, `gemv1_f16_f16`), which the backend's
// signature parser expands (src/cuda/kernel-sources.ts). Arithmetic is f32 everywhere; A is only how
// values are stored between kernels.
//
// No toolkit header is included on purpose: NVRTC then needs no include path, and the same source compiles
// with any NVRTC version (CUDA 11.8 through 13). f16 and bf16 are plain 16-bit words converted with one PTX
// instruction (f16) or a shift (bf16), both exact, so kernels read weights in their stored dtype and widen
// them in registers.
#pragma once

typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;

// -inf without <math.h>, which NVRTC does not provide.
#define NEG_INF __int_as_float(0xff800000u)

// Storage types of weights and activations. Distinct structs so templates can tell them apart.
struct f16_t {
  u16 bits;
};
struct bf16_t {
  u16 bits;
};

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(f16_t v) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
}
__device__ __forceinline__ float to_f32(bf16_t v) { return __uint_as_float(((u32)v.bits) << 16); }

// Round-to-nearest-even stores, for kernels templated on the activation type (f32 in parity mode).
template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ f16_t from_f32<f16_t>(float v) {
  f16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));
  return h;
}
template <> __device__ __forceinline__ bf16_t from_f32<bf16_t>(float v) {
  // Round to nearest even by hand (cvt.rn.bf16.f32 needs sm_80; this works on any arch); NaN stays NaN.
  u32 b = __float_as_uint(v);
  bf16_t r;
  if ((b & 0x7fffffffu) > 0x7f800000u) r.bits = (u16)((b >> 16) | 0x40u);
  else r.bits = (u16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
  return r;
}

// Elements of T in one 16-byte load: 4 f32 or 8 f16/bf16.
template <typename T> struct Vec16 {
  static constexpr int N = 16 / sizeof(T);
};

// Widens W 32-bit words to f32: W f32 elements, or 2·W 16-bit ones (the low half first).
template <typename T, int W> __device__ __forceinline__ void widen_words(const u32 (&w)[W], float *out) {
  if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int i = 0; i < W; i++) out[i] = __uint_as_float(w[i]);
  } else {
#pragma unroll
    for (int i = 0; i < W; i++) {
      T lo, hi;
      lo.bits = (u16)(w[i] & 0xffffu);
      hi.bits = (u16)(w[i] >> 16);
      out[2 * i] = to_f32(lo);
      out[2 * i + 1] = to_f32(hi);
    }
  }
}

// Widens the N = 16 / sizeof(T) elements of one 16-byte word to f32.
template <typename T> __device__ __forceinline__ void widen16(const uint4 raw, float *out) {
  const u32 w[4] = {raw.x, raw.y, raw.z, raw.w};
  widen_words<T, 4>(w, out);
}

// 16 bytes of activations an earlier kernel wrote, as an ordinary (coherent) load kept after griddepcontrol.wait.
// ld.global.nc (__ldg) promises ptxas the data is read-only for the kernel's whole life; under PDL the kernel
// before is still writing it while this one starts, and ptxas may issue such a load before the wait. The mma GEMV
// did (session 21): its 2–8-row steps of the 7B gave other ids on every run, chained or not, while each small
// check passed.
__device__ __forceinline__ uint4 ld_act16(const void *p) {
  uint4 r;
  asm volatile("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p) : "memory");
  return r;
}
// 8 bytes of activations, as ld_act16.
__device__ __forceinline__ uint2 ld_act8(const void *p) {
  uint2 r;
  asm volatile("ld.global.v2.u32 {%0, %1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p) : "memory");
  return r;
}

// Widens the 8 / sizeof(T) elements of one 8-byte word to f32.
template <typename T> __device__ __forceinline__ void widen8(const uint2 raw, float *out) {
  const u32 w[2] = {raw.x, raw.y};
  widen_words<T, 2>(w, out);
}

// Loads N consecutive elements of T at p widened to f32, 16 bytes at a time (8 bytes when N·sizeof(T) is 8);
// p must be aligned to the load width. ACT picks the load (below): true for activations, which the kernel
// before this one wrote, false for weights, which no kernel writes.
template <typename T, int N, bool ACT> __device__ __forceinline__ void load_n(const T *p, float *out) {
  constexpr int BYTES = N * (int)sizeof(T);
  static_assert(BYTES == 8 || BYTES % 16 == 0, "load_n loads 8 bytes or whole 16-byte vectors");
  if constexpr (BYTES == 8) {
    widen8<T>(ACT ? ld_act8(p) : __ldg(reinterpret_cast<const uint2 *>(p)), out);
  } else {
#pragma unroll
    for (int k = 0; k < BYTES / 16; k++) {
      const T *q = p + k * Vec16<T>::N;
      widen16<T>(ACT ? ld_act16(q) : __ldg(reinterpret_cast<const uint4 *>(q)), out + k * Vec16<T>::N);
    }
  }
}

// N elements of a weight (a norm's gain or bias, a router's row): read-only through the non-coherent path
// (__ldg), which ptxas may issue early, before griddepcontrol.wait too, and that is safe for data no kernel writes.
template <typename T, int N> __device__ __forceinline__ void load_weight(const T *p, float *out) { load_n<T, N, false>(p, out); }

// N elements of an activation the kernel before this one wrote: coherent loads kept after griddepcontrol.wait
// (ld_act16 says why never __ldg). They cost nothing measurable: graphed 7B steps on an H200 alternated with a
// build of the old __ldg loads, 1 row 3.784 against 3.763 ms, 8 rows 4.367 against 4.377 (means of 4 and 2
// runs, spread ±0.05; PERF-NOTES, session 22). Every activation a kernel reads goes through this, ld_act16 or a plain
// dereference of a pointer that is not __restrict__ (which would let the compiler make it ld.global.nc);
// test/cuda-activation-loads.test.ts holds the kernels to it.
template <typename T, int N> __device__ __forceinline__ void load_act(const T *p, float *out) { load_n<T, N, true>(p, out); }

// ---------------------------------------------------------------------------------------------------
// Activations (codes must match ACTIVATION_CODES in src/cuda/op-launches.ts).
#define ACT_RELU 0
#define ACT_SILU 1
#define ACT_GELU 2
#define ACT_GELU_TANH 3

__device__ __forceinline__ float act_fn(int fn, float x) {
  switch (fn) {
  case ACT_RELU: return x < 0.f ? 0.f : x;
  case ACT_SILU: return x / (1.f + expf(-x));
  // The exact erf GELU (PyTorch default), not the tanh approximation.
  case ACT_GELU: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
  case ACT_GELU_TANH: return 0.5f * x * (1.f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
  }
  return x;
}

// A store of an output that is either the activation type or f32 (the graph's output: logits stay f32
// even when activations are 16-bit, so greedy decoding sees unrounded scores).
template <typename A> __device__ __forceinline__ void store_out(void *y, i64 i, float v, int yF32) {
  if (yF32) static_cast<float *>(y)[i] = v;
  else static_cast<A *>(y)[i] = from_f32<A>(v);
}

// 16 bytes of a weight stream: read once, so it bypasses L1 (keeping x and norm weights there).
// volatile keeps the loads where they are written: before griddepcontrol.wait, so a dependent launch
// streams its weights while the kernel before it finishes.
// Builds with -DZINFER_STREAM_EVICT_FIRST (ZINFER_CUDA_DEFINE, an experiment) also mark the stream first
// out of L2, so that what a step reads again soon (activations, norm and router weights, the KV cache of
// the step before) stays there.
__device__ __forceinline__ uint4 ld_stream16(const void *p) {
  uint4 r;
#ifdef ZINFER_STREAM_EVICT_FIRST
  unsigned long long pol; // not volatile: one createpolicy serves every load of the kernel
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p), "l"(pol));
#else
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
#endif
  return r;
}

// 16 bytes of weights past L1 with L2's usual priority: a router's, and (for now) the experts' (the moe_down
// kernel lost 9 µs a layer on the Mixtral tp-4 rank with the evict-first stream, PERF-NOTES session 17).
__device__ __forceinline__ uint4 ld_small16(const void *p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}


// Programmatic dependent launch (sm_90): a kernel launched with programmatic stream serialization may
// start while the kernel before it is finishing; it must call grid_dep_wait() before it reads anything that
// kernel wrote (or writes anything it reads). Both are no-ops for an ordinary launch and before sm_90.
// What kernels read before the wait: weights, the step's metadata and the KV cache of earlier steps (the
// GEMV's first weight loads, the decode attention's block table and first K/V round, the embedding rows).
// That is safe because every step starts with the upload of its metadata, a copy that no kernel overlaps,
// so everything earlier steps wrote is complete. A chained decode (CudaProgram.runArgmaxSteps), whose argmax
// writes the next step's token ids on the device, keeps it so: the next step still uploads the rest of
// its metadata first. A graph of several steps would have to revisit it. One read reaches further back: the small-step MoE down kernel reads
// the routing (and its first expert's weights) before its wait, because the gate/up kernel before it calls
// grid_dep_launch() only after its own wait, so everything before the gate/up kernel has completed.
#ifdef ZINFER_TRACE
// The graphed step's timeline, in trace builds only (ZINFER_CUDA_TRACE=1, src/cuda/kernel-trace.ts): thread 0
// of block (0,0,0) of every kernel that waits on the one before it appends a record of when it reached the
// wait and when the wait let it go (%globaltimer, ns), with its grid and block, to the host's buffer. The
// host points every module's zinfer_trace at one buffer and one cursor after loading it.
struct TraceSink {
  unsigned long long *records; // [capacity][4]: reached, released, gx | gy << 32, gz | block << 32
  unsigned int *cursor;
  unsigned int capacity;
};
__device__ TraceSink zinfer_trace;
__device__ __forceinline__ unsigned long long trace_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ bool trace_first() {
  return (blockIdx.x | blockIdx.y | blockIdx.z | threadIdx.x | threadIdx.y | threadIdx.z) == 0;
}
__device__ __forceinline__ void trace_put(unsigned long long a, unsigned long long b, unsigned long long c, unsigned long long d) {
  const TraceSink s = zinfer_trace;
  if (s.records == nullptr) return;
  const unsigned int i = atomicAdd(s.cursor, 1u);
  if (i >= s.capacity) return;
  unsigned long long *r = s.records + 4ull * i;
  r[0] = a;
  r[1] = b;
  r[2] = c;
  r[3] = d;
}
__device__ __forceinline__ void trace_record(unsigned long long reached, unsigned long long released) {
  trace_put(reached, released, (unsigned long long)gridDim.x | ((unsigned long long)gridDim.y << 32),
            (unsigned long long)gridDim.z | ((unsigned long long)blockDim.x << 32));
}
// A point inside a kernel, reached by thread 0 of block (0,0,0): a record with block 0 and the tag as its
// grid (TRACE_MARK(tag), nothing in other builds), timed against the kernel's release by the host.
#define TRACE_MARK(tag)                                     \
  do {                                                      \
    if (trace_first()) {                                    \
      const unsigned long long t_ = trace_ns();             \
      trace_put(t_, t_, (unsigned long long)(tag), 0ull);   \
    }                                                       \
  } while (0)
#else
#define TRACE_MARK(tag) \
  do {                  \
  } while (0)
#endif

__device__ __forceinline__ void grid_dep_wait() {
#ifdef ZINFER_TRACE
  const bool first = trace_first();
  const unsigned long long reached = first ? trace_ns() : 0ull;
#endif
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#ifdef ZINFER_TRACE
  if (first) trace_record(reached, trace_ns());
#endif
}
__device__ __forceinline__ void grid_dep_launch() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// Asks L2 to fetch part `part` of `parts` of [base, base + bytes) (sm_90 bulk prefetch; a hint, nothing
// waits on it). Latency-bound kernels pass the weights of the GEMV that comes next, so DRAM works during
// them and the GEMV finds its first rows in L2. Pieces of 16 KiB, one per thread of the block. A no-op
// before sm_90, and with compilers older than CUDA 12 (PTX ISA 8.0 brought the instruction).
__device__ __forceinline__ void l2_prefetch(const void *base, long long bytes, long long part, long long parts) {
#if __CUDA_ARCH__ >= 900 && defined(__CUDACC_VER_MAJOR__) && __CUDACC_VER_MAJOR__ >= 12
  if (base == nullptr || bytes <= 0 || parts <= 0) return;
  constexpr long long PIECE = 16384;
  const long long pieces = (bytes + PIECE - 1) / PIECE;
  for (long long i = part * blockDim.x + threadIdx.x; i < pieces; i += parts * blockDim.x) {
    const long long off = i * PIECE;
    const unsigned size = (unsigned)(min(PIECE, bytes - off) & ~15LL);
    // The instruction takes a .global address: convert the generic pointer rather than assume they agree.
    if (size) {
      asm volatile("{\n\t.reg .u64 g;\n\tcvta.to.global.u64 g, %0;\n\tcp.async.bulk.prefetch.L2.global [g], %1;\n\t}" ::"l"(static_cast<const char *>(base) + off),
                   "r"(size)
                   : "memory");
    }
  }
#endif
}

// Stores N = 16 / sizeof(T) f32 values at p (16-byte aligned) as one 16-byte word of T.
template <typename T> __device__ __forceinline__ void store16(T *p, const float *v) {
  u32 w[4];
  if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int i = 0; i < 4; i++) w[i] = __float_as_uint(v[i]);
  } else {
#pragma unroll
    for (int i = 0; i < 4; i++) w[i] = (u32)from_f32<T>(v[2 * i]).bits | ((u32)from_f32<T>(v[2 * i + 1]).bits << 16);
  }
  *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the trailing barrier lets callers reuse it at once.
__device__ __forceinline__ float block_sum(float v, float *scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < warps ? scratch[lane] : 0.f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

// 32 values per lane summed over the warp in 31 shuffles: lane l returns the warp's sum of v[l]. Each
// round halves the values a lane keeps, trading the other half with the lane `n` away.
template <int n> __device__ __forceinline__ void transpose_round(float (&v)[32], int lane) {
  const bool up = (lane & n) != 0;
#pragma unroll
  for (int i = 0; i < n; i++) {
    const float send = up ? v[i] : v[i + n];
    const float keep = up ? v[i + n] : v[i];
    v[i] = keep + __shfl_xor_sync(0xffffffffu, send, n);
  }
}
__device__ __forceinline__ float warp_transpose_sum(float (&v)[32]) {
  const int lane = threadIdx.x & 31;
  transpose_round<16>(v, lane);
  transpose_round<8>(v, lane);
  transpose_round<4>(v, lane);
  transpose_round<2>(v, lane);
  transpose_round<1>(v, lane);
  return v[0];
}
