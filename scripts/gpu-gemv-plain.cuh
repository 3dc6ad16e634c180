// What the standalone GEMV benches share (gpu-gemv-rate-bench.cu, gpu-gemv-chain-bench.cu, gpu-gemv-mma-bench.cu):
// the device setup, the per-shape case constants, the graph timer, the plain GEMV they compare the engine's
// entries with, and the weight fill. Include after bench.cu, gemv.cu and gpu-cuda-check.cuh.
#pragma once
#include <algorithm>
#include <vector>

// Device 0 as the benches use it: a stream, its SM count and its name.
struct BenchGpu {
  cudaStream_t s;
  int sms;
  cudaDeviceProp prop;
};
static BenchGpu benchGpu() {
  BenchGpu g{};
  CUDA(cudaStreamCreate(&g.s));
  CUDA(cudaDeviceGetAttribute(&g.sms, cudaDevAttrMultiProcessorCount, 0));
  CUDA(cudaGetDeviceProperties(&g.prop, 0));
  return g;
}

// A GEMV shape of the per-shape benches (gpu-gemv-rate-bench.cu, gpu-gemv-mma-bench.cu): n outputs of inF
// inputs; each case rotates COPIES weight copies (over L2) in graphs of LAUNCHES launches replayed REPLAYS times.
struct Shape {
  const char *name;
  int n, inF;
};
static const int COPIES = 4, LAUNCHES = 20, REPLAYS = 5;

// µs a unit of `capture(i)` for i < units, captured once as a CUDA graph and replayed `replays` times (one
// untimed first): the median replay over the units.
template <typename F> static float graphUs(cudaStream_t s, int units, int replays, F capture) {
  cudaGraph_t g;
  cudaGraphExec_t e;
  CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < units; i++) capture(i);
  CUDA(cudaStreamEndCapture(s, &g));
  CUDA(cudaGraphInstantiate(&e, g, 0));
  CUDA(cudaGraphLaunch(e, s));
  CUDA(cudaStreamSynchronize(s));
  std::vector<float> t;
  for (int r = 0; r < replays; r++) t.push_back(timeUs(s, [&](int) { CUDA(cudaGraphLaunch(e, s)); }, 0, 1) / units);
  CUDA(cudaGraphExecDestroy(e));
  CUDA(cudaGraphDestroy(g));
  std::sort(t.begin(), t.end());
  return t[replays / 2];
}

__device__ __forceinline__ void bulk_prefetch_l2(const void *p, u32 bytes) {
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
}

// The engine's layout (a block of 128 threads per 4 consecutive rows, 4 loads a row a thread per round, rounds
// not rolled, x through L1, one block reduction), optionally asking L2 for the rows of the block `ahead`
// blocks later (one bulk prefetch by thread 0): with `ahead` about the blocks resident at once, the DRAM
// stream runs a wave ahead of the register loads, which then hit L2.
// MODE bits, each taking one trait of the engine's GEMV (to find which costs): 1, its reduction (32 values a
// lane transposed over the warp, then two barriers); 2, its loop (break at the row's end, the next round's
// loads issued after the consumption); 4, griddepcontrol.launch_dependents first. MINB: blocks an SM asked of the register allocator; ROWS: weight rows a block (4 as the engine), U: loads a row a thread.
template <bool PF, int MODE, int MINB, int ROWS = 4, int U = 4>
__global__ void __launch_bounds__(128, MINB) gemv_blk(f16_t *y, const f16_t *W, const f16_t *x, int n, int inF, int ahead) {
  __shared__ float red[4][64];
  __shared__ float fin[ROWS];
  if constexpr (MODE & 4) grid_dep_launch();
  const int b = blockIdx.x, nb = (n + ROWS - 1) / ROWS;
  if (PF && threadIdx.x == 0 && b + ahead < nb) {
    const int r0 = (b + ahead) * ROWS, rows = n - r0 < ROWS ? n - r0 : ROWS;
    bulk_prefetch_l2(W + (i64)r0 * inF, (u32)rows * inF * 2);
  }
  const int nv = inF / 8;
  const f16_t *wp[ROWS];
  bool ok[ROWS];
  float acc[ROWS];
#pragma unroll
  for (int i = 0; i < ROWS; i++) ok[i] = ROWS * b + i < n, wp[i] = W + (i64)(ok[i] ? ROWS * b + i : 0) * inF, acc[i] = 0.f;
  uint4 raw[U][ROWS];
  auto fetch = [&](int u, int v) {
#pragma unroll
    for (int i = 0; i < ROWS; i++) raw[u][i] = ok[i] && v < nv ? ld_stream16(wp[i] + (i64)v * 8) : make_uint4(0u, 0u, 0u, 0u);
  };
  auto consume = [&](int u, int v) {
    float xf[8];
    load16<f16_t>(x + (i64)v * 8, xf);
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
      float wf[8];
      widen16<f16_t>(raw[u][i], wf);
#pragma unroll
      for (int k = 0; k < 8; k++) acc[i] += wf[k] * xf[k];
    }
  };
  if constexpr (MODE & 2) {
#pragma unroll
    for (int u = 0; u < U; u++) fetch(u, threadIdx.x + u * 128);
    grid_dep_wait();
    for (int base = threadIdx.x; base < nv; base += 128 * U) {
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int v = base + u * 128;
        if (v >= nv) break;
        consume(u, v);
      }
#pragma unroll
      for (int u = 0; u < U; u++) fetch(u, base + 128 * U + u * 128);
    }
  } else {
    for (int base = threadIdx.x; base < nv; base += 128 * U) {
#pragma unroll
      for (int u = 0; u < U; u++) fetch(u, base + u * 128);
      if (base == (int)threadIdx.x) grid_dep_wait();
#pragma unroll
      for (int u = 0; u < U; u++)
        if (base + u * 128 < nv) consume(u, base + u * 128);
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if constexpr (MODE & 1) {
    float v[32];
#pragma unroll
    for (int k = 0; k < 32; k++) v[k] = k < ROWS ? acc[k] : 0.f;
    red[warp][lane] = warp_transpose_sum(v);
    __syncthreads();
    if (threadIdx.x < ROWS) fin[threadIdx.x] = red[0][threadIdx.x] + red[1][threadIdx.x] + red[2][threadIdx.x] + red[3][threadIdx.x];
    __syncthreads();
    if (threadIdx.x < ROWS && ok[threadIdx.x]) y[ROWS * b + threadIdx.x] = from_f32<f16_t>(fin[threadIdx.x]);
  } else {
#pragma unroll
    for (int i = 0; i < ROWS; i++) {
      const float s = warp_sum(acc[i]);
      if (lane == 0) red[warp][i] = s;
    }
    __syncthreads();
    if (threadIdx.x < ROWS && ok[threadIdx.x]) y[ROWS * b + threadIdx.x] = from_f32<f16_t>(red[0][threadIdx.x] + red[1][threadIdx.x] + red[2][threadIdx.x] + red[3][threadIdx.x]);
  }
}

__global__ void fill_f16(f16_t *p, size_t count, u32 seed, float scale) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
    u32 h = (u32)i * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = from_f32<f16_t>(((h & 0xffffu) / 65535.f - 0.5f) * scale);
  }
}
