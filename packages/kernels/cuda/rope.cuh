// Rotary position embedding pieces shared by rotary.cu (rotary, rope_kv) and attention.cu (the decode
// attention rotates q and the step's k itself): the cos/sin table of a position and one rotated element;
// and how a value enters the KV cache (CachePut). The angle p·invFreq is formed and its cos/sin taken in
// double, as the reference does: in f32 the angle alone is off by ~p·6e-8 rad, 3e-4 at position 5000,
// past the parity tolerance.
#pragma once
#include "common.cuh"
#include "fp8.cuh"

#define ROPE_MAX_HALF 256 // rotaryDim / 2 (supports() caps headDim at 256)

// This dim's rotated value in a head whose elements are `src`; cs/sn hold cos and sin of every pair.
template <typename A>
__device__ __forceinline__ float rotate_dim(const A *src, int t, int rotaryDim, int interleaved, const double *cs, const double *sn) {
  if (t >= rotaryDim) return to_f32(src[t]);
  const int half = rotaryDim >> 1;
  // This dim's pair: (first, second) = (i, i + half) or (2i, 2i + 1).
  const int i = interleaved ? (t >> 1) : (t < half ? t : t - half);
  const int first = interleaved ? 2 * i : i;
  const int second = interleaved ? 2 * i + 1 : i + half;
  const double x1 = to_f32(src[first]), x2 = to_f32(src[second]);
  return (float)(t == first ? x1 * cs[i] - x2 * sn[i] : x2 * cs[i] + x1 * sn[i]);
}

// cos and sin (scaled) of every pair at the row's position, in shared memory. sincospi of angle/π: its
// argument reduction is exact and short, where sincos's reduction of large angles needs a local-memory
// table (a stack frame, and spills in the decode attention that calls this); the division costs ~1 ulp.
__device__ __forceinline__ void rope_table(double *cs, double *sn, double p, const double *invFreq, int rotaryDim, float scaling) {
  for (int i = threadIdx.x; i < (rotaryDim >> 1); i += blockDim.x) {
    double s, c;
    sincospi(p * invFreq[i] / 3.141592653589793238462643383279502884, &s, &c);
    cs[i] = c * scaling;
    sn[i] = s * scaling;
  }
  __syncthreads();
}

// A value of the activation type as the cache's element type C: itself when C is A (an exact copy), else
// rounded (the opt-in fp8 cache, fp8.cuh).
template <typename C, typename A> struct CachePut {
  static __device__ __forceinline__ C copy(A v) { return from_f32<C>(to_f32(v)); }
  static __device__ __forceinline__ C round(float v) { return from_f32<C>(v); }
};
template <typename A> struct CachePut<A, A> {
  static __device__ __forceinline__ A copy(A v) { return v; }
  static __device__ __forceinline__ A round(float v) { return from_f32<A>(v); }
};

