// y = x · Wᵀ + bias for many rows with W in any stored dtype: a plain shared-memory tiled GEMM (64×64
// outputs a block, 4×4 a thread, f32 accumulation). It keeps f32 parity with f16/bf16 weights, which
// cuBLAS cannot (its GEMMs want A and B of one type); in the 16-bit modes cuBLAS runs these products on
// tensor cores and this kernel is only the fallback without cuBLAS.
#include "common.cuh"

#define TM 64 // rows of x per block
#define TN 64 // output features per block
#define TK 16 // reduction slice per shared-memory stage

// W: stored weight type; A: activation type of x, and of y unless yF32 (the graph's f32 output).
template <typename W, typename A>
__device__ void gemm(void *__restrict__ y, const W *__restrict__ w, const A *x, const float *__restrict__ bias,
                     int rows, int inF, int outF, int yF32) {
  // +4 floats a row keeps the transposed stores off a single bank.
  __shared__ float xs[TK][TM + 4], ws[TK][TN + 4];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int row0 = blockIdx.y * TM, col0 = blockIdx.x * TN;
  grid_dep_wait();
  grid_dep_launch();
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;

  for (int k0 = 0; k0 < inF; k0 += TK) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int idx = tid + 256 * i, m = idx / TK, kk = idx % TK, k = k0 + kk;
      xs[kk][m] = (row0 + m < rows && k < inF) ? to_f32(x[(i64)(row0 + m) * inF + k]) : 0.f;
      ws[kk][m] = (col0 + m < outF && k < inF) ? to_f32(w[(i64)(col0 + m) * inF + k]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < TK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = row0 + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int o = col0 + tx + 16 * j;
      if (r < rows && o < outF) store_out<A>(y, (i64)r * outF + o, acc[i][j] + (bias ? bias[o] : 0.f), yF32);
    }
  }
}

// y [rows, outF]; w [outF, inF] in its stored dtype; x [rows, inF]; bias [outF] f32 or null.
// grid (ceil(outF / TN), ceil(rows / TM)), block (256).
#define GEMM_ENTRY(WS, AS, W, A)                                                                                            \
  extern "C" __global__ void __launch_bounds__(256)                                                                         \
      gemm_##WS##_##AS(void *y, const W *w, const A *x, const float *bias, int rows, int inF, int outF, int yF32) {        \
    gemm<W, A>(y, w, x, bias, rows, inF, outF, yF32);                                                                       \
  }

GEMM_ENTRY(f32, f32, float, float)
GEMM_ENTRY(f16, f32, f16_t, float)
GEMM_ENTRY(bf16, f32, bf16_t, float)
GEMM_ENTRY(f16, f16, f16_t, f16_t)
GEMM_ENTRY(bf16, bf16, bf16_t, bf16_t)
