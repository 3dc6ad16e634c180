// The fp8 (e4m3, OCP FP8: 1 sign, 4 exponent bits biased by 7, 3 mantissa bits; no infinities, ±448 the
// largest finite, 0x7f/0xff NaN) storage of the opt-in fp8 KV cache. The cache stores values unscaled (a
// per-tensor scale of 1, as vLLM's uncalibrated fp8 cache does): K and V of the models zinfer runs stay far
// inside ±448, and a value beyond saturates to ±448 instead of overflowing.
//
// Stores round to nearest even in software (any arch; exact, and what cvt.rn.satfinite.e4m3x2 does);
// loads widen with cvt.rn.f16x2.e4m3x2 on sm_89+ (two values an instruction), in software before.
// Both are __host__ __device__ so the test suite checks them on the host against a reference codec.
#pragma once
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#include "common.cuh"
#define FP8_HD __host__ __device__ __forceinline__
#else
#define FP8_HD inline // a plain C++ compiler: the host test of the codec
#endif

struct e4m3_t {
  unsigned char bits;
};

// Bits of a float and back: the intrinsics on the device (NVRTC has no memcpy), memcpy on the host.
FP8_HD unsigned int fp8_f2u(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  unsigned int b;
  __builtin_memcpy(&b, &v, 4);
  return b;
#endif
}
FP8_HD float fp8_u2f(unsigned int b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float v;
  __builtin_memcpy(&v, &b, 4);
  return v;
#endif
}

// Round to nearest even, saturating to ±448; NaN stays NaN (0x7f with the sign).
FP8_HD unsigned char e4m3_encode_bits(float v) {
  const unsigned int b = fp8_f2u(v);
  const unsigned char sign = (unsigned char)((b >> 24) & 0x80u);
  const unsigned int abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7fu;   // NaN
  if (abs >= 0x43e00000u) return sign | 0x7eu;  // ≥ 448 (and inf): saturate
  if (abs < 0x3c800000u) {                      // below 2^-6, the smallest normal: subnormal steps of 2^-9
    const float q = fp8_u2f(abs) * 512.f;                  // exact (power of two)
    unsigned int m = (unsigned int)q;           // floor; then round half to even
    const float rem = q - (float)m;
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) m++;
    return sign | (unsigned char)m;             // m = 8 is 2^-6, the smallest normal's code: still right
  }
  // Normal: keep 3 of the 23 mantissa bits, rounding the other 20 to nearest even (a carry bumps the exponent).
  const unsigned int r = abs + 0x7ffffu + ((abs >> 20) & 1u);
  const int e = (int)(r >> 23) - 127 + 7;
  const unsigned int code = ((unsigned int)e << 3) | ((r >> 20) & 7u);
  return sign | (unsigned char)(code > 0x7eu ? 0x7eu : code);
}

FP8_HD float e4m3_decode_bits(unsigned char c) {
  const unsigned int e = (c >> 3) & 15u, m = c & 7u;
  float v;
  if (e == 15u && m == 7u) v = fp8_u2f(0x7fc00000u);
  else if (e == 0u) v = (float)m * (1.f / 512.f);
  else v = fp8_u2f(((e - 7u + 127u) << 23) | (m << 20));
  return (c & 0x80u) ? -v : v;
}

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
__device__ __forceinline__ float to_f32(e4m3_t v) { return e4m3_decode_bits(v.bits); }
template <> __device__ __forceinline__ e4m3_t from_f32<e4m3_t>(float v) { return e4m3_t{e4m3_encode_bits(v)}; }

// Packed f16 pairs (the low half the first element). The fp8 cache's decode loop does its products in them:
// e4m3 widens to f16 exactly, so an element never goes through f32 (attention.cu says why, and what rounding
// that adds).
__device__ __forceinline__ u32 f16x2_pack(float lo, float hi) {
  u32 d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo)); // the first source is the upper half
  return d;
}
__device__ __forceinline__ u32 f16x2_fma(u32 a, u32 b, u32 c) {
  u32 d;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
__device__ __forceinline__ float f16x2_lo(u32 h) {
  f16_t v;
  v.bits = (u16)(h & 0xffffu);
  return to_f32(v);
}
__device__ __forceinline__ float f16x2_hi(u32 h) {
  f16_t v;
  v.bits = (u16)(h >> 16);
  return to_f32(v);
}
// Two e4m3 (the low and high byte of w) as an f16 pair: exact (every e4m3 value is an f16 value).
__device__ __forceinline__ u32 e4m3x2_to_f16x2(unsigned short w) {
#if __CUDA_ARCH__ >= 890
  u32 h2;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(w));
  return h2;
#else
  return f16x2_pack(e4m3_decode_bits((unsigned char)(w & 0xffu)), e4m3_decode_bits((unsigned char)(w >> 8)));
#endif
}
// Two e4m3 (the low and high byte of w) to f32.
__device__ __forceinline__ void e4m3x2_to_f32(unsigned short w, float &lo, float &hi) {
#if __CUDA_ARCH__ >= 890
  const u32 h2 = e4m3x2_to_f16x2(w);
  lo = f16x2_lo(h2);
  hi = f16x2_hi(h2);
#else
  lo = e4m3_decode_bits((unsigned char)(w & 0xffu));
  hi = e4m3_decode_bits((unsigned char)(w >> 8));
#endif
}
#endif
