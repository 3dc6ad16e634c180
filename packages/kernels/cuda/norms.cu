// RMSNorm and LayerNorm over groups of `dim` elements (a whole row, or one head for q/k norm): one block
// per group, warp-shuffle reductions, f32 arithmetic. Norm weights and biases arrive as f32 (the backend
// widens 1-D weights at upload: they are tiny, and one type keeps these kernels simple). In decode steps
// a norm that feeds only linear layers is fused into their GEMV instead (gemv.cu).
#include "common.cuh"

// A: activation type of x and y.
template <typename A> __device__ void rms_norm(A *y, const A *x, const float *w, int dim, float eps) {
  __shared__ float scratch[32];
  grid_dep_wait();
  grid_dep_launch();
  const i64 base = (i64)blockIdx.x * dim;
  float sq = 0.f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    const float v = to_f32(x[base + j]);
    sq += v * v;
  }
  sq = block_sum(sq, scratch);
  const float inv = 1.f / sqrtf(sq / (float)dim + eps);
  for (int j = threadIdx.x; j < dim; j += blockDim.x) y[base + j] = from_f32<A>(to_f32(x[base + j]) * inv * w[j]);
}

template <typename A> __device__ void layer_norm(A *y, const A *x, const float *w, const float *b, int dim, float eps) {
  __shared__ float scratch[32];
  grid_dep_wait();
  grid_dep_launch();
  const i64 base = (i64)blockIdx.x * dim;
  float sum = 0.f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) sum += to_f32(x[base + j]);
  const float mean = block_sum(sum, scratch) / (float)dim;
  float sq = 0.f;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    const float d = to_f32(x[base + j]) - mean;
    sq += d * d;
  }
  const float inv = 1.f / sqrtf(block_sum(sq, scratch) / (float)dim + eps);
  for (int j = threadIdx.x; j < dim; j += blockDim.x) y[base + j] = from_f32<A>((to_f32(x[base + j]) - mean) * inv * w[j] + b[j]);
}

// rms_norm: y, x [groups, dim]; w [dim]. layer_norm: also b [dim]; two passes (mean, then squared
// deviations) as the reference does, so rows with a large mean keep an exact variance.
// grid (groups), block (multiple of 32, ≤ 1024).
#define NORM_ENTRIES(S, A)                                                                                             \
  extern "C" __global__ void rms_norm_##S(A *y, const A *x, const float *w, int dim, float eps) { rms_norm<A>(y, x, w, dim, eps); } \
  extern "C" __global__ void layer_norm_##S(A *y, const A *x, const float *w, const float *b, int dim, float eps) {  \
    layer_norm<A>(y, x, w, b, dim, eps);                                                                               \
  }

NORM_ENTRIES(f32, float)
NORM_ENTRIES(f16, f16_t)
NORM_ENTRIES(bf16, bf16_t)
