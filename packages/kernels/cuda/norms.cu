// RMSNorm and LayerNorm over groups of `dim` elements (a whole row, or one head for q/k norm): one block
// per group, warp-shuffle reductions, f32 arithmetic. A group of whole 16-byte vectors, at most NORM_VECS a
// thread, is read once into registers (one DRAM round trip, then the reductions); others take the scalar loop,
// which reads x again for each pass. Norm weights and biases arrive as f32 (the backend
// widens 1-D weights at upload: they are tiny, and one type keeps these kernels simple). In decode steps
// a norm that feeds only linear layers is fused into their GEMV instead (gemv.cu).
#include "common.cuh"

#define NORM_VECS 4 // 16-byte vectors of x a thread holds in the one-read path

// Whether the group at x + base (and y + base) is whole 16-byte vectors, aligned, at most NORM_VECS a thread.
template <typename A> __device__ __forceinline__ bool norm_in_registers(const A *y, const A *x, i64 base, int dim) {
  constexpr int N = Vec16<A>::N;
  return dim % N == 0 && dim / N <= NORM_VECS * (int)blockDim.x && (((unsigned long long)(x + base) | (unsigned long long)(y + base)) & 15) == 0;
}

// This thread's vectors of the group (vector j = threadIdx.x + k · blockDim.x in v[k]), widened to f32. Coherent
// loads (load_act): x is the kernel before's output (common.cuh says why not __ldg).
template <typename A> __device__ __forceinline__ void norm_load(const A *x, int nv, float (&v)[NORM_VECS][Vec16<A>::N]) {
  constexpr int N = Vec16<A>::N;
#pragma unroll
  for (int k = 0; k < NORM_VECS; k++) {
    const int j = threadIdx.x + k * blockDim.x;
    if (j < nv) load_act<A, N>(x + (i64)j * N, v[k]);
  }
}

// This thread's share of Σ (v - shift)^P over its vectors (P 1: the sum; 2: the squares about shift).
template <int P, int N> __device__ __forceinline__ float norm_sum(int nv, const float (&v)[NORM_VECS][N], float shift) {
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < NORM_VECS; k++)
    if ((int)threadIdx.x + k * (int)blockDim.x < nv)
#pragma unroll
      for (int e = 0; e < N; e++) s += P == 1 ? v[k][e] - shift : (v[k][e] - shift) * (v[k][e] - shift);
  return s;
}

// y = (v - mean) · inv · w (+ b), vector by vector, for this thread's vectors (mean 0 and b null for RMSNorm).
template <typename A>
__device__ __forceinline__ void norm_store(A *y, int nv, float (&v)[NORM_VECS][Vec16<A>::N], float mean, float inv, const float *w, const float *b) {
  constexpr int N = Vec16<A>::N;
#pragma unroll
  for (int k = 0; k < NORM_VECS; k++) {
    const int j = threadIdx.x + k * blockDim.x;
    if (j < nv) {
      float g[N], c[N];
      load_weight<float, N>(w + (i64)j * N, g);
      if (b) load_weight<float, N>(b + (i64)j * N, c);
#pragma unroll
      for (int e = 0; e < N; e++) v[k][e] = (v[k][e] - mean) * inv * g[e] + (b ? c[e] : 0.f);
      store16<A>(y + (i64)j * N, v[k]);
    }
  }
}

// A: activation type of x and y.
template <typename A> __device__ void rms_norm(A *y, const A *x, const float *w, int dim, float eps) {
  __shared__ float scratch[32];
  grid_dep_wait();
  grid_dep_launch();
  const i64 base = (i64)blockIdx.x * dim;
  if (norm_in_registers<A>(y, x, base, dim)) {
    constexpr int N = Vec16<A>::N;
    const int nv = dim / N;
    float v[NORM_VECS][N];
    norm_load<A>(x + base, nv, v);
    const float inv = 1.f / sqrtf(block_sum(norm_sum<2>(nv, v, 0.f), scratch) / (float)dim + eps);
    norm_store<A>(y + base, nv, v, 0.f, inv, w, nullptr);
    return;
  }
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
  if (norm_in_registers<A>(y, x, base, dim)) {
    constexpr int N = Vec16<A>::N;
    const int nv = dim / N;
    float v[NORM_VECS][N];
    norm_load<A>(x + base, nv, v);
    const float mean = block_sum(norm_sum<1>(nv, v, 0.f), scratch) / (float)dim;
    const float inv = 1.f / sqrtf(block_sum(norm_sum<2>(nv, v, mean), scratch) / (float)dim + eps);
    norm_store<A>(y + base, nv, v, mean, inv, w, b);
    return;
  }
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
