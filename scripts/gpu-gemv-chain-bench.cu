// The decode GEMVs of a 7B layer in a chain, as the graphed batch-1 step runs them (PDL: each kernel launched
// while the one before drains, its first weight loads issued before griddepcontrol.wait), against the read
// kernel over the same bytes. gpu-gemv-rate-bench.cu times each GEMV alone; the step is a chain, where a
// kernel's ramp and drain may hide under its neighbours' or add to them. Cases (per layer: q|k|v, o, gate|up,
// down; 8 layers of distinct weights, 3.2 GB, so nothing is read from L2):
//   - read: read_bandwidth over each GEMV's bytes in turn (the ceiling of the same chain);
//   - engine: the entries `auto` picks (dense, dense, dense, occ) with the step's norms and epilogues
//     (RMSNorm into q|k|v and gate/up, the residual adds, the gated SiLU, q|k|v as 3 segments);
//   - engine-nonorm: the same without the norms; engine-plain: without norms, epilogues or segments;
//   - engine-v1: v1 everywhere; engine-nopdl: engine without PDL;
//   - blk@3 / blk@4: the plain kernel (gpu-gemv-plain.cuh, launch_dependents first) at 3 and 4 blocks an SM;
//   - plain+blk X: engine-plain's layer with GEMV X on the plain kernel (where a difference comes from).
// Session 19 found with it that ptxas had moved the engine's first weight loads after griddepcontrol.wait
// (bench/results/gemv-chain-*-h200-s19.json; PERF-NOTES).
// Each case: a CUDA graph of the 8 layers, replayed 9 times, median per layer. Prints JSON.
// Built on the GPU machine, which has the CUDA toolkit:
//   nvcc -O3 -std=c++17 -arch=sm_90 -o /tmp/gemv-chain scripts/gpu-gemv-chain-bench.cu && /tmp/gemv-chain [7b | 13b-tp4]
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "../packages/kernels/cuda/bench.cu"
#include "../packages/kernels/cuda/gemv.cu"
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include "gpu-cuda-check.cuh"
#include "gpu-gemv-plain.cuh"

static const int LAYERS = 8, CHAIN_REPLAYS = 9;
// The layer's widths: hidden H, intermediate I, each of q, k and v Q (the attention's width); set by the shape.
static int H = 4096, I = 11008, Q = 4096;
typedef decltype(&gemv1d_f16_f16) EngineKernel;

// A launch with programmatic stream serialization (the engine's PDL), or a plain one.
template <typename... P, typename... Args> static void launch(cudaStream_t s, bool pdl, void (*k)(P...), int grid, int block, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.stream = s;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at;
  cfg.numAttrs = pdl ? 1 : 0;
  CUDA(cudaLaunchKernelEx(&cfg, k, ((P)args)...));
}

struct Layer { f16_t *qkv, *o, *gu, *down; }; // q|k|v rows side by side, gate rows then up rows
struct Acts { f16_t *x, *qkv, *x2, *h; float *normW; };

// One GEMV through an engine entry: up to 3 segments of n rows each at w, w + n·in, ...
static void engine(cudaStream_t s, bool pdl, EngineKernel k, int grid, f16_t *y, const f16_t *w, int n, int segs, const f16_t *x, const f16_t *res,
                   const float *normW, int inF, int epi, int norm) {
  if (k == gemv1e_f16_f16) grid = (grid + 1) / 2; // 8 rows a block (every shape here: half the 4-row blocks)
  const size_t seg = (size_t)n * inF;
  f16_t *y1 = segs > 1 ? y + n : nullptr, *y2 = segs > 2 ? y + 2 * n : nullptr;
  const f16_t *w1 = segs > 1 || epi == EPI_GATED ? w + seg : nullptr, *w2 = segs > 2 ? w + 2 * seg : nullptr;
  launch(s, pdl, k, grid, k == gemv1w_f16_f16 ? 32 : GEMV_THREADS, (void *)y, w, (const float *)nullptr, n, (void *)y1, w1, (const float *)nullptr, segs > 1 ? n : 0, (void *)y2, w2,
         (const float *)nullptr, segs > 2 ? n : 0, x, res, normW, (const float *)nullptr, 1e-5f, 1, inF, epi, (int)ACT_SILU, norm, 0, (const void *)nullptr, 0, 0,
         (const unsigned long long *)nullptr, 0, 0, 0, 0);
}

int main(int argc, char **argv) {
  const std::string shape = argc > 1 ? argv[1] : "7b";
  if (shape == "13b-tp4") H = 5120, I = 3456, Q = 1280; // one rank of a tp-4 13B: 10 of 40 heads, a quarter of 13,824
  else if (shape != "7b") {
    fprintf(stderr, "shape: 7b or 13b-tp4, not %s\n", shape.c_str());
    return 2;
  }
  const BenchGpu gpu = benchGpu();
  cudaStream_t s = gpu.s;
  const int sms = gpu.sms;
  const cudaDeviceProp &prop = gpu.prop;
  const size_t qkvN = 3ull * Q * H, oN = (size_t)H * Q, guN = 2ull * I * H, dN = (size_t)H * I, layerN = qkvN + oN + guN + dN;
  f16_t *w;
  CUDA(cudaMalloc(&w, LAYERS * layerN * 2));
  fill_f16<<<1024, 256, 0, s>>>(w, LAYERS * layerN, 1u, 0.05f);
  std::vector<Layer> layers;
  for (int l = 0; l < LAYERS; l++) {
    f16_t *b = w + l * layerN;
    layers.push_back({b, b + qkvN, b + qkvN + oN, b + qkvN + oN + guN});
  }
  Acts a;
  CUDA(cudaMalloc(&a.x, H * 2));
  CUDA(cudaMalloc(&a.qkv, 3 * Q * 2));
  CUDA(cudaMalloc(&a.x2, H * 2));
  CUDA(cudaMalloc(&a.h, I * 2));
  CUDA(cudaMalloc(&a.normW, H * 4));
  fill_f16<<<16, 256, 0, s>>>(a.x, H, 7u, 2.f);
  std::vector<float> ones(H, 1.f);
  CUDA(cudaMemcpy(a.normW, ones.data(), H * 4, cudaMemcpyHostToDevice));
  u32 *sink;
  CUDA(cudaMalloc(&sink, 4096 * 4));
  CUDA(cudaStreamSynchronize(s));

  // Per-layer µs of the chain `layer(l)` over the 8 layers, captured once as a graph.
  auto chainUs = [&](auto layer) { return graphUs(s, LAYERS, CHAIN_REPLAYS, [&](int l) { layer(layers[l]); }); };
  const int qkvG = 3 * Q / 4, oG = H / 4, guG = I / 2, dG = H / 4;
  // A layer's four GEMVs, each through an engine entry (with or without the step's norms and epilogues) or
  // through the plain kernel: kinds[j] for GEMV j (q|k|v, o, gate|up, down), 0 the engine entry k[j], 1 the
  // plain kernel at 3 blocks an SM, 2 at 4, 3 with 8 rows a block (2 loads a row a thread; 4 blocks an SM, so
  // a 4,096-row GEMV is one wave of 512 blocks), 4 with 2 rows a block; for rows of 5 vectors a thread (5,120
  // wide), 5: 4 rows and 5 loads a row (one round; 3 blocks an SM), 6: 2 rows and 5 loads (4 an SM), 7: 4 rows
  // and 3 loads (rounds of 3 and 2).
  auto layerOf = [&](bool pdl, std::array<EngineKernel, 4> k, std::array<int, 4> kinds, bool norms, bool epis) {
    const int nm = norms ? NORM_RMS : NORM_NONE;
    return [=, &a](const Layer &L) {
      auto plain = [&](int kind, int, f16_t *y, const f16_t *w, const f16_t *x, int n, int inF) {
        if (kind == 1) launch(s, true, gemv_blk<false, 4, 1>, (n + 3) / 4, 128, y, w, x, n, inF, 0);
        else if (kind == 2) launch(s, true, gemv_blk<false, 4, 4>, (n + 3) / 4, 128, y, w, x, n, inF, 0);
        else if (kind == 3) launch(s, true, gemv_blk<false, 4, 4, 8, 2>, (n + 7) / 8, 128, y, w, x, n, inF, 0);
        else if (kind == 4) launch(s, true, gemv_blk<false, 4, 4, 2, 4>, (n + 1) / 2, 128, y, w, x, n, inF, 0);
        else if (kind == 5) launch(s, true, gemv_blk<false, 4, 1, 4, 5>, (n + 3) / 4, 128, y, w, x, n, inF, 0);
        else if (kind == 6) launch(s, true, gemv_blk<false, 4, 4, 2, 5>, (n + 1) / 2, 128, y, w, x, n, inF, 0);
        else launch(s, true, gemv_blk<false, 4, 4, 4, 3>, (n + 3) / 4, 128, y, w, x, n, inF, 0);
      };
      if (kinds[0]) plain(kinds[0], qkvG, a.qkv, L.qkv, a.x, 3 * Q, H);
      else if (epis) engine(s, pdl, k[0], qkvG, a.qkv, L.qkv, Q, 3, a.x, nullptr, a.normW, H, EPI_NONE, nm);
      else engine(s, pdl, k[0], qkvG, a.qkv, L.qkv, 3 * Q, 1, a.x, nullptr, a.normW, H, EPI_NONE, nm);
      if (kinds[1]) plain(kinds[1], oG, a.x2, L.o, a.qkv, H, Q);
      else engine(s, pdl, k[1], oG, a.x2, L.o, H, 1, a.qkv, epis ? a.x : nullptr, nullptr, Q, epis ? EPI_RESIDUAL : EPI_NONE, NORM_NONE);
      if (kinds[2]) plain(kinds[2], 2 * I / 4, a.h, L.gu, a.x2, 2 * I, H);
      else if (epis) engine(s, pdl, k[2], guG, a.h, L.gu, I, 1, a.x2, nullptr, a.normW, H, EPI_GATED, nm);
      else engine(s, pdl, k[2], 2 * I / 4, a.h, L.gu, 2 * I, 1, a.x2, nullptr, a.normW, H, EPI_NONE, nm);
      if (kinds[3]) plain(kinds[3], dG, a.x, L.down, a.h, H, I);
      else engine(s, pdl, k[3], dG, a.x, L.down, H, 1, a.h, epis ? a.x2 : nullptr, nullptr, I, epis ? EPI_RESIDUAL : EPI_NONE, NORM_NONE);
    };
  };
  const std::array<EngineKernel, 4> AUTO = {gemv1d_f16_f16, gemv1d_f16_f16, gemv1d_f16_f16, gemv1o_f16_f16};
  const std::array<EngineKernel, 4> V1 = {gemv1_f16_f16, gemv1_f16_f16, gemv1_f16_f16, gemv1_f16_f16};
  const std::array<int, 4> ENGINE = {0, 0, 0, 0}, BLK3 = {1, 1, 1, 1}, BLK4 = {2, 2, 2, 2};
  auto readLayer = [&](const Layer &L) {
    for (auto [p, n] : {std::pair{L.qkv, qkvN}, {L.o, oN}, {L.gu, guN}, {L.down, dN}})
      read_bandwidth<<<sms * 8, READ_THREADS, 0, s>>>(sink, (const uint4 *)p, (int)(n * 2 / 16));
  };

  struct Case { std::string name; float us; };
  std::vector<Case> cases;
  auto run = [&](const char *name, auto layer) {
    cases.push_back({name, chainUs(layer)});
    CUDA(cudaGetLastError());
    fprintf(stderr, "%-16s %.2f µs a layer\n", name, cases.back().us);
  };
  // Alternated twice, so that a drift of the card shows as a difference between the rounds.
  for (int round = 0; round < 2; round++) {
    if (shape == "7b") {
      run("read", readLayer);
      run("engine", layerOf(true, AUTO, ENGINE, true, true));
      run("engine-nonorm", layerOf(true, AUTO, ENGINE, false, true));
      run("engine-plain", layerOf(true, AUTO, ENGINE, false, false));
      run("engine-v1", layerOf(true, V1, ENGINE, true, true));
      run("engine-nopdl", layerOf(false, AUTO, ENGINE, true, true));
      run("blk@3", layerOf(true, AUTO, BLK3, false, false));
      run("blk@4", layerOf(true, AUTO, BLK4, false, false));
      // One GEMV of engine-plain's layer on the plain kernel at a time: where the difference is.
      run("plain+blk q|k|v", layerOf(true, AUTO, {1, 0, 0, 0}, false, false));
      run("plain+blk o", layerOf(true, AUTO, {0, 1, 0, 0}, false, false));
      run("plain+blk gate|up", layerOf(true, AUTO, {0, 0, 1, 0}, false, false));
      run("plain+blk down", layerOf(true, AUTO, {0, 0, 0, 1}, false, false));
      // Rows a block for o and down (1,024 blocks of 4 rows are 1.9 waves of 528), and o on occ.
      run("blk@3, o|down 8 rows", layerOf(true, AUTO, {1, 3, 1, 3}, false, false));
      run("blk@3, o|down 2 rows", layerOf(true, AUTO, {1, 4, 1, 4}, false, false));
      run("blk 8 rows", layerOf(true, AUTO, {3, 3, 3, 3}, false, false));
      run("engine, o on occ", layerOf(true, {gemv1d_f16_f16, gemv1o_f16_f16, gemv1d_f16_f16, gemv1o_f16_f16}, ENGINE, true, true));
      run("engine, o|down eight", layerOf(true, {gemv1d_f16_f16, gemv1e_f16_f16, gemv1d_f16_f16, gemv1e_f16_f16}, ENGINE, true, true));
    } else {
      // A 13B tp-4 rank: auto takes occ (q|k|v: 5 vectors a thread), the one-warp GEMV (o: 1,280 inputs), occ
      // (gate|up) and dense (down: 3,456 inputs, one round).
      const std::array<EngineKernel, 4> R4 = {gemv1o_f16_f16, gemv1w_f16_f16, gemv1o_f16_f16, gemv1d_f16_f16};
      auto with = [&](int j, EngineKernel k) {
        std::array<EngineKernel, 4> ks = R4;
        ks[j] = k;
        return ks;
      };
      run("read", readLayer);
      run("engine", layerOf(true, R4, ENGINE, true, true));
      run("engine, gate|up v1", layerOf(true, with(2, gemv1_f16_f16), ENGINE, true, true));
      run("engine, gate|up dense", layerOf(true, with(2, gemv1d_f16_f16), ENGINE, true, true));
      run("engine, gate|up eight", layerOf(true, with(2, gemv1e_f16_f16), ENGINE, true, true));
      run("engine, q|k|v dense", layerOf(true, with(0, gemv1d_f16_f16), ENGINE, true, true));
      run("engine, q|k|v eight", layerOf(true, with(0, gemv1e_f16_f16), ENGINE, true, true));
      run("engine, down eight", layerOf(true, with(3, gemv1e_f16_f16), ENGINE, true, true));
      run("engine-plain", layerOf(true, R4, ENGINE, false, false));
      run("blk@3", layerOf(true, R4, BLK3, false, false));
      run("plain+blk gate|up", layerOf(true, R4, {0, 0, 1, 0}, false, false));
      run("plain+gate|up 4r u5", layerOf(true, R4, {0, 0, 5, 0}, false, false));
      run("plain+gate|up 2r u5", layerOf(true, R4, {0, 0, 6, 0}, false, false));
      run("plain+gate|up 4r u3", layerOf(true, R4, {0, 0, 7, 0}, false, false));
      run("plain+gate|up 8r u2", layerOf(true, R4, {0, 0, 3, 0}, false, false));
      run("plain+q|k|v 4r u5", layerOf(true, R4, {5, 0, 0, 0}, false, false));
      run("plain+q|k|v 2r u5", layerOf(true, R4, {6, 0, 0, 0}, false, false));
    }
  }
  const size_t PER_ROUND = cases.size() / 2;
  const double mb = layerN * 2 / 1e6;
  printf("{\"card\": \"%s\", \"sms\": %d, \"shape\": \"%s\", \"layer_mb\": %.1f, \"layers\": %d, \"cases\": [", prop.name, sms, shape.c_str(), mb, LAYERS);
  for (size_t i = 0; i < cases.size(); i++)
    printf("%s\n  {\"case\": \"%s\", \"us_per_layer\": %.2f, \"gb_per_s\": %.0f, \"of_read\": %.3f}", i ? "," : "", cases[i].name.c_str(), cases[i].us,
           mb * 1e3 / cases[i].us, cases[i / PER_ROUND * PER_ROUND].us / cases[i].us);
  printf("\n]}\n");
  return 0;
}
