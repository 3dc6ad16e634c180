// The skinny tensor-core GEMM (packages/kernels/cuda/skinny.cu) alone, on the Llama-2-7B shapes, built with
// nvcc on the GPU machine (no Node.js needed): each case is timed as 20 launches over rotating copies of its
// weights (more bytes than L2 holds, so every launch reads DRAM), and its weight bytes over that time are
// printed against a plain read of the same bytes. Used to design the kernel (PERF-NOTES, session 9):
//   nvcc -O3 -arch=sm_90 -std=c++17 -I packages/kernels/cuda -o /tmp/skinny-bench scripts/gpu-skinny-bench.cu
//   /tmp/skinny-bench            (then e.g. ncu --clock-control none -k regex:skinny -c 1 /tmp/skinny-bench)
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#include "skinny.cu"

#define CHECK(x)                                                                                              \
  do {                                                                                                        \
    cudaError_t e_ = (x);                                                                                     \
    if (e_ != cudaSuccess) {                                                                                  \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));                      \
      exit(1);                                                                                                \
    }                                                                                                         \
  } while (0)

typedef void (*SkinnyFn)(void *, const f16_t *, const float *, int, void *, const f16_t *, const float *, int, void *, const f16_t *,
                         const float *, int, const f16_t *, const f16_t *, const float *, float, int, int, int, int, int, int);

__global__ void read_all(const uint4 *p, long long n, unsigned *sink) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const uint4 v = ld_stream16(p + i);
    acc.x ^= v.x, acc.y ^= v.y, acc.z ^= v.z, acc.w ^= v.w;
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x12345678u) *sink = 1;
}

struct Case {
  const char *name;
  int n0, n1, n2, inF, epi, norm;
};

int main(int argc, char **argv) {
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int fixedSplits = argc > 1 ? atoi(argv[1]) : 0;
  const Case cases[] = {
      {"q|k|v 4096 -> 3x4096 norm", 4096, 4096, 4096, 4096, EPI_NONE, NORM_RMS},
      {"o 4096 -> 4096 +residual", 4096, 0, 0, 4096, EPI_RESIDUAL, NORM_NONE},
      {"gate|up 4096 -> 2x11008 gated norm", 11008, 11008, 0, 4096, EPI_GATED, NORM_RMS},
      {"down 11008 -> 4096 +residual", 4096, 0, 0, 11008, EPI_RESIDUAL, NORM_NONE},
      {"lm head 4096 -> 20000 norm", 20000, 0, 0, 4096, EPI_NONE, NORM_RMS}, // (32000 rows would outgrow the buffer)
  };
  const int COPIES = 4;
  const size_t maxW = (size_t)2 * 11008 * 4096; // elements of the largest case
  f16_t *w;
  CHECK(cudaMalloc(&w, COPIES * maxW * 2));
  CHECK(cudaMemset(w, 0x11, COPIES * maxW * 2));
  f16_t *x, *res;
  void *y;
  float *g;
  CHECK(cudaMalloc(&x, 64 * 11008 * 2));
  CHECK(cudaMemset(x, 0x22, 64 * 11008 * 2));
  CHECK(cudaMalloc(&res, 64 * 32000 * 2));
  CHECK(cudaMemset(res, 0, 64 * 32000 * 2));
  CHECK(cudaMalloc(&y, 64 * 3 * 32000 * 4));
  CHECK(cudaMalloc(&g, 11008 * 4));
  CHECK(cudaMemset(g, 0, 11008 * 4));
  unsigned *sink;
  CHECK(cudaMalloc(&sink, 4));
  cudaStream_t s;
  CHECK(cudaStreamCreate(&s));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  auto timeIt = [&](auto launch) {
    for (int i = 0; i < 3; i++) launch(i);
    CHECK(cudaStreamSynchronize(s));
    CHECK(cudaEventRecord(e0, s));
    for (int i = 0; i < 20; i++) launch(i);
    CHECK(cudaEventRecord(e1, s));
    CHECK(cudaEventSynchronize(e1));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    return ms * 1000.f / 20.f;
  };
  // The read rate of the card on the same bytes (all copies of the largest weight).
  const long long vecs = (long long)(COPIES * maxW * 2 / 16);
  const float readUs = timeIt([&](int) { read_all<<<sms * 8, 256, 0, s>>>(reinterpret_cast<const uint4 *>(w), vecs, sink); });
  const double readGBps = COPIES * maxW * 2 / (readUs * 1e3);
  printf("device read: %.0f GB/s (%d SMs)\n", readGBps, sms);
  const SkinnyFn fns[2][3] = {{skinny2_f16, skinny4_f16, skinny8_f16}, {skinny2n_f16, skinny4n_f16, skinny8n_f16}};
  const int rowsOf[3] = {16, 32, 64};
  for (const Case &c : cases) {
    const bool gated = c.epi == EPI_GATED;
    const int tiles = gated ? (c.n0 + SKINNY_TILE / 2 - 1) / (SKINNY_TILE / 2)
                            : (c.n0 + SKINNY_TILE - 1) / SKINNY_TILE + (c.n1 + SKINNY_TILE - 1) / SKINNY_TILE + (c.n2 + SKINNY_TILE - 1) / SKINNY_TILE;
    const size_t wElems = (size_t)(c.n0 + c.n1 + c.n2) * c.inF;
    const int chunks = c.inF / 64;
    for (int v = 0; v < 3; v++) {
      // skinnySplits in src/cuda/skinny-launch.ts: the least waves × (chunks a block + 8), counting the clusters
      // of each size that are resident at once.
      auto resident = [&](int k) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(tiles * k);
        cfg.blockDim = dim3(SKINNY_THREADS);
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = k;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        int n = 0;
        CHECK(cudaOccupancyMaxActiveClusters(&n, fns[c.norm][v], &cfg));
        return n;
      };
      int splits = 1;
      double bestCost = 1e30;
      for (int k = 1; k <= 8 && chunks >= 4 * k; k++) {
        const double cost = (double)((tiles + resident(k) - 1) / resident(k)) * ((double)chunks / k + 8);
        if (cost < bestCost - 1e-9) splits = k, bestCost = cost;
      }
      if (fixedSplits > 0) splits = fixedSplits;
      const int rows = rowsOf[v];
      const float us = timeIt([&](int i) {
        const f16_t *w0 = w + (size_t)(i % COPIES) * maxW;
        const f16_t *w1 = w0 + (size_t)c.n0 * c.inF, *w2 = w1 + (size_t)c.n1 * c.inF;
        char *yb = static_cast<char *>(y);
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(tiles * splits);
        cfg.blockDim = dim3(SKINNY_THREADS);
        cfg.stream = s;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = splits;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        CHECK(cudaLaunchKernelEx(&cfg, fns[c.norm][v], (void *)yb, w0, (const float *)nullptr, c.n0, (void *)(yb + 64 * 32000 * 4), w1, (const float *)nullptr, c.n1,
                                 (void *)(yb + 2 * 64 * 32000 * 4), w2, (const float *)nullptr, c.n2, (const f16_t *)x, (const f16_t *)res,
                                 c.norm ? (const float *)g : nullptr, 1e-5f, rows, c.inF, c.epi, 1, 0, splits));
      });
      int clusters = 0;
      {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(tiles * splits);
        cfg.blockDim = dim3(SKINNY_THREADS);
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = splits;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        CHECK(cudaOccupancyMaxActiveClusters(&clusters, fns[c.norm][v], &cfg));
      }
      const double GBps = wElems * 2 / (us * 1e3);
      printf("%-36s rows %2d  splits %d  blocks %4d (clusters %3d, %3d resident)  %7.1f us  %5.0f GB/s  %3.0f%% of read\n", c.name, rows, splits, tiles * splits, tiles, clusters, us, GBps,
             100 * GBps / readGBps);
    }
  }
  CHECK(cudaGetLastError());
  return 0;
}
