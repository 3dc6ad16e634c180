// Can the tensor cores take the decode GEMV's arithmetic at 2–8 rows? (PERF-NOTES, session 20.) At 8 rows the
// engine's best GEMV (eight) needs 8 FP32 FMAs a weight element, over half the card's FP32 rate at its read
// bandwidth, and a 7B step is 3.4 × its weight-read limit. This times, on the 7B layer's shapes at R rows of x
// (weights in DRAM: 4 rotating copies):
//   - read: the same weight bytes through the engine's read_bandwidth kernel (the ceiling, same run);
//   - v1 / dense / eight: the engine's own entries for R rows (cuda/gemv.cu, included as is; no norm, no epilogue);
//   - mma<U>: a warp takes 16 weight rows over a quarter of the inputs; each thread loads a 16-byte vector of
//     rows g and g + 8 and of x row g (its lane's group), U such rounds in flight, and feeds each round to
//     two mma.sync.m16n8k16 (f16 in, f32 sums): the batch's rows are the MMA's 8 columns, rows past R are
//     zeros. The inputs inside a 32-element chunk go to the MMA in a permuted order, the same for the
//     weights and x, so one 16-byte load fills the fragments with no shuffles. The block's 4 warps add their
//     sums through shared memory.
// Then the engine's gemv_mma itself (engine_mma below), by U and RMSNorm. (Session 21 timed its x loads here too:
// a round's loaded together or each before its MMA, within 1%: bench/results/gemv-mma-engine-h200-s21.json.)
// Each case: a CUDA graph of 20 launches, replayed 5 times, median; mma's output against v1's (largest
// difference over the largest value). Prints JSON.
// Built on the GPU machine, which has the CUDA toolkit:
//   nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/gemv-mma scripts/gpu-gemv-mma-bench.cu && /tmp/gemv-mma
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

// y [R, n] = x [R, inF] · Wᵀ (W [n, inF]); inF a multiple of 128 (a warp's quarter a multiple of 32).
// The launch bound's block count matters: with none, ptxas moved each load next to its MMA (32 registers, one
// round in flight); asking for 4 blocks an SM it keeps the U rounds in flight (74 / 120 registers at U = 4 / 8).
template <int R, int U>
__global__ void __launch_bounds__(128, 4) mma_gemv(f16_t *y, const f16_t *W, const f16_t *x, int n, int inF) {
  __shared__ float red[4][16][8];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int row0 = blockIdx.x * 16;
  const int quarter = inF / 4, kBegin = warp * quarter, kEnd = kBegin + quarter;
  const f16_t *wa = W + (i64)min(row0 + g, n - 1) * inF, *wb = W + (i64)min(row0 + g + 8, n - 1) * inF;
  const f16_t *xr = x + (i64)(g < R ? g : 0) * inF;
  const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  // A round: the group's 4 threads read 32 consecutive inputs (8 each) of rows g and g + 8, and of x row g.
  // Thread t's 8 inputs k .. k+7 are the MMA's inputs {2t, 2t+1, 2t+8, 2t+9} twice: k .. k+3, then k+4 .. k+7.
  for (int k0 = kBegin; k0 < kEnd; k0 += 32 * U) {
    uint4 ra[U], rb[U], rx[U];
    // Every load is issued (past the quarter's end at its last 8 inputs, then zeroed), none behind a branch:
    // behind branches ptxas kept one round in flight (32 registers).
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int k = k0 + 32 * u + 8 * t, kk = min(k, kEnd - 8);
      ra[u] = ld_stream16(wa + kk);
      rb[u] = ld_stream16(wb + kk);
      rx[u] = *reinterpret_cast<const uint4 *>(xr + kk);
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const bool ok = k0 + 32 * u + 8 * t < kEnd, okx = ok && g < R;
      ra[u] = ok ? ra[u] : zero;
      rb[u] = ok ? rb[u] : zero;
      rx[u] = okx ? rx[u] : zero;
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      mma_chunk<f16_t>(d, ra[u], rb[u], rx[u]); // (mma.cuh, through gemv.cu)
    }
  }
  // d: rows g and g + 8, batch columns 2t and 2t + 1.
  red[warp][g][2 * t] = d[0];
  red[warp][g][2 * t + 1] = d[1];
  red[warp][g + 8][2 * t] = d[2];
  red[warp][g + 8][2 * t + 1] = d[3];
  __syncthreads();
  const int m = threadIdx.x / 8, c = threadIdx.x % 8;
  if (c < R && row0 + m < n) y[(i64)c * n + row0 + m] = from_f32<f16_t>(red[0][m][c] + red[1][m][c] + red[2][m][c] + red[3][m][c]);
}

// The engine's gemv_mma (cuda/gemv.cu) as its entries run it (no epilogue), by U and norm (none or RMSNorm, whose
// output differs: no error reported).
template <int U, int NM>
__global__ void __launch_bounds__(GEMV_THREADS, 4) engine_mma(f16_t *y, const f16_t *W, const f16_t *x, const float *normW, int n, int inF, int rows) {
  gemv_mma<U, f16_t, NM>(y, W, nullptr, n, nullptr, nullptr, nullptr, 0, nullptr, nullptr, nullptr, 0, x, nullptr, normW, 1e-5f, rows, inF,
                               EPI_NONE, 0, 0, nullptr, 0, 0, LLPush{nullptr, 0, 0, 0, 0});
}
static float *gNormW;

template <int R> static void rowsCase(cudaStream_t s, int sms, const Shape &sh, f16_t *(*W)(int), f16_t *x, f16_t *yRef, f16_t *y, u32 *sink, bool &firstCase) {
  const double mb = (double)sh.n * sh.inF * 2 / 1e6;
  struct Row { std::string name; float us; float err; };
  std::vector<Row> rows;
  const int n16 = (int)((size_t)sh.n * sh.inF * 2 / 16);
  rows.push_back({"read", graphUs(s, LAUNCHES, REPLAYS, [&](int i) { read_bandwidth<<<sms * 8, READ_THREADS, 0, s>>>(sink, (const uint4 *)W(i), n16); }), 0.f});
  std::vector<__half> ref((size_t)R * sh.n), out((size_t)R * sh.n);
  auto relErr = [&]() { // y against v1's output, relative to its largest value
    CUDA(cudaStreamSynchronize(s));
    CUDA(cudaMemcpy(out.data(), y, (size_t)R * sh.n * 2, cudaMemcpyDeviceToHost));
    float err = 0.f, big = 0.f;
    for (size_t r = 0; r < out.size(); r++) {
      err = std::max(err, std::fabs(__half2float(out[r]) - __half2float(ref[r])));
      big = std::max(big, std::fabs(__half2float(ref[r])));
    }
    return err / big;
  };
  auto engine = [&](const char *name, auto kernel, int blockRows) {
    auto go = [&](int i, f16_t *o) {
      kernel<<<(sh.n + blockRows - 1) / blockRows, GEMV_THREADS, 0, s>>>(o, W(i), nullptr, sh.n, nullptr, nullptr, nullptr, 0, nullptr, nullptr, nullptr, 0, x,
                                                                         nullptr, nullptr, nullptr, 0.f, R, sh.inF, EPI_NONE, 0, NORM_NONE, 0, nullptr, 0, 0,
                                                                         nullptr, 0, 0, 0, 0);
    };
    if (rows.size() == 1) {
      go(0, yRef);
      CUDA(cudaStreamSynchronize(s));
      CUDA(cudaMemcpy(ref.data(), yRef, (size_t)R * sh.n * 2, cudaMemcpyDeviceToHost));
    }
    go(0, y);
    const float err = relErr();
    rows.push_back({name, graphUs(s, LAUNCHES, REPLAYS, [&](int i) { go(i, y); }), err});
  };
  if constexpr (R == 2) {
    engine("v1", gemv2_f16_f16, 4);
    engine("dense", gemv2d_f16_f16, 4);
    engine("eight", gemv2e_f16_f16, 8);
  } else if constexpr (R == 4) {
    engine("v1", gemv4_f16_f16, 4);
    engine("dense", gemv4d_f16_f16, 4);
    engine("eight", gemv4e_f16_f16, 8);
  } else {
    engine("v1", gemv8_f16_f16, 4);
    engine("dense", gemv8d_f16_f16, 4);
    engine("eight", gemv8e_f16_f16, 8);
  }
  auto mma = [&](const char *name, auto kernel) {
    auto go = [&](int i) { kernel<<<(sh.n + 15) / 16, 128, 0, s>>>(y, W(i), x, sh.n, sh.inF); };
    go(0);
    const float err = relErr();
    rows.push_back({name, graphUs(s, LAUNCHES, REPLAYS, go), err});
  };
  mma("mma4", mma_gemv<R, 4>);
  mma("mma8", mma_gemv<R, 8>);
  auto eng = [&](const char *name, auto kernel, bool norm) {
    auto go = [&](int i) { kernel<<<(sh.n + 15) / 16, 128, 0, s>>>(y, W(i), x, gNormW, sh.n, sh.inF, R); };
    go(0);
    const float err = norm ? 0.f : relErr();
    rows.push_back({name, graphUs(s, LAUNCHES, REPLAYS, go), err});
  };
  eng("engine8", engine_mma<8, NORM_NONE>, false);
  eng("engine4", engine_mma<4, NORM_NONE>, false);
  eng("engine8 rms", engine_mma<8, NORM_RMS>, true);
  eng("engine4 rms", engine_mma<4, NORM_RMS>, true);
  CUDA(cudaGetLastError());
  printf("%s  {\"shape\": \"%s\", \"rows\": %d, \"n\": %d, \"in\": %d, \"mb\": %.2f, \"kernels\": [", firstCase ? "" : ",\n", sh.name, R, sh.n, sh.inF, mb);
  firstCase = false;
  for (size_t k = 0; k < rows.size(); k++)
    printf("%s\n    {\"kernel\": \"%s\", \"us\": %.2f, \"gb_per_s\": %.0f, \"of_read\": %.3f, \"rel_err\": %.2e}", k ? "," : "", rows[k].name.c_str(),
           rows[k].us, mb * 1e3 / rows[k].us, rows[0].us / rows[k].us, rows[k].err);
  printf("]}");
  fflush(stdout);
  fprintf(stderr, "%-12s R=%d", sh.name, R);
  for (const Row &r : rows) fprintf(stderr, "  %s %.1f (%.0f%%, err %.1e)", r.name.c_str(), r.us, 100.f * rows[0].us / r.us, r.err);
  fprintf(stderr, "\n");
}

static f16_t *gW;
static size_t gMaxW;
static f16_t *weightCopy(int i) { return gW + (size_t)(i % COPIES) * gMaxW; }

int main() {
  const BenchGpu gpu = benchGpu();
  cudaStream_t s = gpu.s;
  const int sms = gpu.sms;
  const cudaDeviceProp &prop = gpu.prop;
  const Shape shapes[] = {{"7B q|k|v", 12288, 4096}, {"7B o", 4096, 4096}, {"7B gate|up", 22016, 4096}, {"7B down", 4096, 11008}, {"7B head", 32000, 4096}};
  for (const Shape &sh : shapes) gMaxW = std::max(gMaxW, (size_t)sh.n * sh.inF);
  f16_t *x, *yRef, *y;
  u32 *sink;
  CUDA(cudaMalloc(&gW, COPIES * gMaxW * 2));
  CUDA(cudaMalloc(&x, 8 * 16384 * 2));
  CUDA(cudaMalloc(&yRef, 8 * 32768 * 2));
  CUDA(cudaMalloc(&y, 8 * 32768 * 2));
  CUDA(cudaMalloc(&sink, 4096 * 4));
  CUDA(cudaMalloc(&gNormW, 16384 * 4));
  {
    std::vector<float> ones(16384, 1.f);
    CUDA(cudaMemcpy(gNormW, ones.data(), ones.size() * 4, cudaMemcpyHostToDevice));
  }
  fill_f16<<<1024, 256, 0, s>>>(gW, COPIES * gMaxW, 1u, 0.05f);
  fill_f16<<<64, 256, 0, s>>>(x, 8 * 16384, 7u, 2.f);
  CUDA(cudaStreamSynchronize(s));
  printf("{\"card\": \"%s\", \"sms\": %d, \"cases\": [\n", prop.name, sms);
  bool firstCase = true;
  for (const Shape &sh : shapes) {
    rowsCase<2>(s, sms, sh, weightCopy, x, yRef, y, sink, firstCase);
    rowsCase<4>(s, sms, sh, weightCopy, x, yRef, y, sink, firstCase);
    rowsCase<8>(s, sms, sh, weightCopy, x, yRef, y, sink, firstCase);
  }
  printf("\n]}\n");
  return 0;
}
