// Elementwise ops over flat [n] activation arrays: residual add, activations, gated activations, bias add,
// row gathering and the f32 copy of a 16-bit graph output (greedy argmax: argmax.cu). Grid-stride
// loops, so any grid size is correct; add and the activations move 16 bytes a thread when n allows
// (buffers are 256-byte aligned). A: the activation type (f32 in parity mode, f16 or bf16).
#include "common.cuh"

template <typename A> __device__ void activation(A *y, const A *x, const A *up, int n, int fn) {
  grid_dep_wait();
  grid_dep_launch();
  const int stride = gridDim.x * blockDim.x;
  constexpr int V = Vec16<A>::N;
  if (n % V == 0) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n / V; i += stride) {
      float a[V], u[V];
      load_act<A, V>(x + (i64)i * V, a);
      if (up) load_act<A, V>(up + (i64)i * V, u);
#pragma unroll
      for (int k = 0; k < V; k++) a[k] = up ? act_fn(fn, a[k]) * u[k] : act_fn(fn, a[k]);
      store16<A>(y + (i64)i * V, a);
    }
    return;
  }
  if (up) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = from_f32<A>(act_fn(fn, to_f32(x[i])) * to_f32(up[i]));
  } else {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = from_f32<A>(act_fn(fn, to_f32(x[i])));
  }
}

template <typename A> __device__ void add(A *y, const A *a, const A *b, int n) {
  grid_dep_wait();
  grid_dep_launch();
  const int stride = gridDim.x * blockDim.x;
  constexpr int V = Vec16<A>::N;
  if (n % V == 0) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n / V; i += stride) {
      float u[V], v[V];
      load_act<A, V>(a + (i64)i * V, u);
      load_act<A, V>(b + (i64)i * V, v);
#pragma unroll
      for (int k = 0; k < V; k++) u[k] += v[k];
      store16<A>(y + (i64)i * V, u);
    }
    return;
  }
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = from_f32<A>(to_f32(a[i]) + to_f32(b[i]));
}

template <typename A> __device__ void bias_add(void *y, const float *bias, int n, int width, int yF32) {
  grid_dep_wait();
  grid_dep_launch();
  const int stride = gridDim.x * blockDim.x;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float v = yF32 ? static_cast<float *>(y)[i] : to_f32(static_cast<A *>(y)[i]);
    store_out<A>(y, i, v + bias[i % width], yF32);
  }
}

template <typename A> __device__ void gather_rows(A *y, const A *x, const int *rows, int width) {
  grid_dep_wait();
  grid_dep_launch();
  const A *src = x + (i64)rows[blockIdx.x] * width;
  A *dst = y + (i64)blockIdx.x * width;
  for (int j = threadIdx.x; j < width; j += blockDim.x) dst[j] = src[j];
}

template <typename A> __device__ void to_f32_copy(float *y, const A *x, int n) {
  grid_dep_wait();
  grid_dep_launch();
  const int stride = gridDim.x * blockDim.x;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = to_f32(x[i]);
}

#define ELEMENTWISE_ENTRIES(S, A)                                                                                        \
  /* y, x, up [n]; up null for a plain activation, else y = fn(x) * up (gated MLP). fn: ACT_* code. */                 \
  extern "C" __global__ void activation_##S(A *y, const A *x, const A *up, int n, int fn) { activation<A>(y, x, up, n, fn); } \
  /* y, a, b [n]: y = a + b (the residual connection). */                                                              \
  extern "C" __global__ void add_##S(A *y, const A *a, const A *b, int n) { add<A>(y, a, b, n); }                        \
  /* y [rows, width] (A, or f32 when yF32) += bias [width]: the bias of a linear computed by cuBLAS. */                  \
  extern "C" __global__ void bias_add_##S(void *y, const float *bias, int n, int width, int yF32) {                     \
    bias_add<A>(y, bias, n, width, yF32);                                                                                \
  }                                                                                                                      \
  /* y [count, width] = x[rows[s], :] for each selected row s. grid (count), block (multiple of 32). */                  \
  extern "C" __global__ void gather_rows_##S(A *y, const A *x, const int *rows, int width) { gather_rows<A>(y, x, rows, width); } \
  /* y [n] f32 = x [n]: the graph's output when a node other than a linear (which writes f32) makes it. */             \
  extern "C" __global__ void to_f32_##S(float *y, const A *x, int n) { to_f32_copy<A>(y, x, n); }

ELEMENTWISE_ENTRIES(f32, float)
ELEMENTWISE_ENTRIES(f16, f16_t)
ELEMENTWISE_ENTRIES(bf16, bf16_t)
