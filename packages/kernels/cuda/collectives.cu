// Layout kernels around the NCCL collectives of tensor and pipeline parallelism (NCCL itself moves the
// data, enqueued on the program's stream): the all-gather's [ranks, rows, width] result interleaved into
// the graph's [rows, ranks * width], and the copy that makes a pipeline send's output value (x itself).
#include "common.cuh"

// y [rows, ranks * width] from x [ranks, rows, width]: y[i, r * width + j] = x[r, i, j]. Grid-stride.
template <typename A> __device__ void interleave_ranks(A *y, const A *x, int rows, int width, int ranks) {
  grid_dep_wait();
  grid_dep_launch();
  const i64 n = (i64)rows * width * ranks;
  const i64 stride = (i64)gridDim.x * blockDim.x;
  for (i64 o = (i64)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += stride) {
    const i64 i = o / ((i64)width * ranks);
    const i64 c = o % ((i64)width * ranks);
    const i64 r = c / width, j = c % width;
    y[o] = x[(r * rows + i) * width + j];
  }
}

template <typename A> __device__ void copy_values(A *y, const A *x, int n) {
  grid_dep_wait();
  grid_dep_launch();
  const int stride = gridDim.x * blockDim.x;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = x[i];
}

#define COLLECTIVE_ENTRIES(S, A)                                                                                         \
  /* y [rows, ranks * width] = x [ranks, rows, width] interleaved (an all-gather along the last axis). */              \
  extern "C" __global__ void interleave_ranks_##S(A *y, const A *x, int rows, int width, int ranks) {                   \
    interleave_ranks<A>(y, x, rows, width, ranks);                                                                       \
  }                                                                                                                      \
  /* y [n] = x [n]. */                                                                                                   \
  extern "C" __global__ void copy_##S(A *y, const A *x, int n) { copy_values<A>(y, x, n); }

COLLECTIVE_ENTRIES(f32, float)
COLLECTIVE_ENTRIES(f16, f16_t)
COLLECTIVE_ENTRIES(bf16, bf16_t)
