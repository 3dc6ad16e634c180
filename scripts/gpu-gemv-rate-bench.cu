// Does the batch-1 decode GEMV lose its read rate in its steady state, or only at its ends? (PERF-NOTES,
// session 18.) In the graphed 7B step the gate/up GEMV adds 50 µs for 40 µs of bytes, q|k|v 29 for 22.
// This times, on Llama shapes at one row of x, each launch reading DRAM (4 rotating weight copies):
//   - read:   the same weight bytes through the engine's read_bandwidth kernel (the ceiling, same run);
//   - v1 / roll / occ / dense: the engine's own GEMV entry points (cuda/gemv.cu, included as is);
//   - blk: the engine's layout written plainly (a block of 128 threads per 4 rows, 4 loads a row a thread,
//     no norm, epilogue or segments), whose MODE bits add one trait of the engine's kernel at a time, and
//     its L2 prefetch of a later block's rows.
// Measured and dropped in the same session (earlier revisions of this file, their outputs in
// bench/results/gemv-rate-history-h200-s18.json): warps that stream an equal share of the matrix each
// (stream-K), or rows dealt to warps cyclically, with a ring of loads kept in flight across rows: 28–68% and
// 41–87% of read.
// Each case: a CUDA graph of 20 launches, replayed 5 times, median. Prints JSON.
// Built on the GPU machine, which has the CUDA toolkit:
//   nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/gemv-rate scripts/gpu-gemv-rate-bench.cu && /tmp/gemv-rate
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../packages/kernels/cuda/bench.cu"
#include "../packages/kernels/cuda/gemv.cu"
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include "gpu-cuda-check.cuh"
#include "gpu-gemv-plain.cuh"

int main() {
  const BenchGpu gpu = benchGpu();
  cudaStream_t s = gpu.s;
  const int sms = gpu.sms;
  const cudaDeviceProp &prop = gpu.prop;
  const Shape shapes[] = {{"7B q|k|v", 12288, 4096}, {"7B o", 4096, 4096}, {"7B gate|up", 22016, 4096}, {"7B down", 4096, 11008},
                          {"7B head", 32000, 4096},  {"13B-tp4 q|k|v", 3840, 5120}, {"13B-tp4 o", 5120, 1280},
                          {"13B-tp4 gate|up", 6912, 5120}, {"13B-tp4 down", 5120, 3456}, {"odd 1000x4000", 1000, 4000}};
  size_t maxW = 0;
  for (const Shape &sh : shapes) maxW = std::max(maxW, (size_t)sh.n * sh.inF);
  f16_t *w, *x, *yRef, *y;
  u32 *sink;
  CUDA(cudaMalloc(&w, COPIES * maxW * 2));
  CUDA(cudaMalloc(&x, 16384 * 2));
  CUDA(cudaMalloc(&yRef, 32768 * 2));
  CUDA(cudaMalloc(&y, 32768 * 2));
  CUDA(cudaMalloc(&sink, 4096 * 4));
  fill_f16<<<1024, 256, 0, s>>>(w, COPIES * maxW, 1u, 0.05f);
  fill_f16<<<64, 256, 0, s>>>(x, 16384, 7u, 2.f);
  CUDA(cudaStreamSynchronize(s));
  auto W = [&](int i) { return w + (size_t)(i % COPIES) * maxW; };

  printf("{\"card\": \"%s\", \"sms\": %d, \"cases\": [\n", prop.name, sms);
  bool firstCase = true;
  for (const Shape &sh : shapes) {
    const double mb = (double)sh.n * sh.inF * 2 / 1e6;
    struct Row { std::string name; float us; float err; int perSm; };
    std::vector<Row> rows;
    const int n16 = (int)((size_t)sh.n * sh.inF * 2 / 16);
    rows.push_back({"read", graphUs(s, LAUNCHES, REPLAYS, [&](int i) { read_bandwidth<<<sms * 8, READ_THREADS, 0, s>>>(sink, (const uint4 *)W(i), n16); }), 0.f, 8});
    auto engine = [&](const char *name, auto kernel) {
      int per = 0;
      CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kernel, GEMV_THREADS, 0));
      auto go = [&](int i, f16_t *out) {
        kernel<<<(sh.n + 3) / 4, GEMV_THREADS, 0, s>>>(out, W(i), nullptr, sh.n, nullptr, nullptr, nullptr, 0, nullptr, nullptr, nullptr, 0, x,
                                                        nullptr, nullptr, nullptr, 0.f, 1, sh.inF, EPI_NONE, 0, NORM_NONE, 0, nullptr, 0, 0,
                                                        nullptr, 0, 0, 0, 0);
      };
      go(0, yRef);
      rows.push_back({name, graphUs(s, LAUNCHES, REPLAYS, [&](int i) { go(i, y); }), 0.f, per});
    };
    engine("v1", gemv1_f16_f16);
    engine("roll", gemv1r_f16_f16);
    engine("occ", gemv1o_f16_f16);
    engine("dense", gemv1d_f16_f16);
    std::vector<__half> ref(sh.n), out(sh.n);
    CUDA(cudaMemcpy(ref.data(), yRef, sh.n * 2, cudaMemcpyDeviceToHost));
    auto relErr = [&]() { // y against the engine's output (its variants write the same bits), relative to its largest value
      CUDA(cudaStreamSynchronize(s));
      CUDA(cudaMemcpy(out.data(), y, sh.n * 2, cudaMemcpyDeviceToHost));
      float err = 0.f, big = 0.f;
      for (int r = 0; r < sh.n; r++) {
        err = std::max(err, std::fabs(__half2float(out[r]) - __half2float(ref[r])));
        big = std::max(big, std::fabs(__half2float(ref[r])));
      }
      return err / big;
    };
    auto blk = [&](auto kernel, const char *name, int aheadWaves) {
      int per = 0;
      CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kernel, 128, 0));
      const int ahead = aheadWaves * per * sms;
      auto go = [&](int i) { kernel<<<(sh.n + 3) / 4, 128, 0, s>>>(y, W(i), x, sh.n, sh.inF, ahead); };
      go(0);
      const float err = relErr();
      rows.push_back({name, graphUs(s, LAUNCHES, REPLAYS, go), err, per});
    };
    blk(gemv_blk<false, 0, 1>, "blk", 0);
    blk(gemv_blk<false, 2, 1>, "blk+loop", 0);
    blk(gemv_blk<false, 4, 1>, "blk+launch", 0);
    blk(gemv_blk<false, 1, 1>, "blk+red", 0);
    blk(gemv_blk<false, 0, 4>, "blk@4", 0);
    blk(gemv_blk<true, 0, 1>, "blk+pf1", 1);
    blk(gemv_blk<true, 0, 1>, "blk+pf2", 2);
    CUDA(cudaGetLastError());
    printf("%s  {\"shape\": \"%s\", \"n\": %d, \"in\": %d, \"mb\": %.2f, \"kernels\": [", firstCase ? "" : ",\n", sh.name, sh.n, sh.inF, mb);
    firstCase = false;
    for (size_t k = 0; k < rows.size(); k++)
      printf("%s\n    {\"kernel\": \"%s\", \"us\": %.2f, \"gb_per_s\": %.0f, \"of_read\": %.3f, \"rel_err\": %.2e, \"blocks_per_sm\": %d}", k ? "," : "",
             rows[k].name.c_str(), rows[k].us, mb * 1e3 / rows[k].us, rows[0].us / rows[k].us, rows[k].err, rows[k].perSm);
    printf("]}");
    fflush(stdout);
    fprintf(stderr, "%-16s", sh.name);
    for (const Row &r : rows) fprintf(stderr, " %s %.1f (%.0f%%, %d)", r.name.c_str(), r.us, 100.f * rows[0].us / r.us, r.perSm);
    fprintf(stderr, "\n");
  }
  printf("\n]}\n");
  return 0;
}
