// Would fewer, larger cuBLAS GEMMs make the batch-decode linears faster? (PERF-NOTES, session 9.) Times, on
// the Llama-2-7B shapes at 16, 32 and 64 rows, each projection as the engine runs it (one GEMM per weight)
// against q|k|v and gate|up as one GEMM over their weights side by side, and as one strided-batched GEMM
// over the separate weights (x broadcast). Each case is 20 launches over 4 rotating copies of its weights
// (more bytes than L2 holds: every launch reads DRAM). f16, f32 accumulation, through cublasGemmEx (the
// engine plans the same problems with cuBLASLt directly: cublas.ts).
// Built on the GPU machine, which has the CUDA toolkit:
//   nvcc -O2 -arch=sm_90 -o /tmp/gemm-merge scripts/gpu-gemm-merge-bench.cu -lcublas && /tmp/gemm-merge
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gpu-cuda-check.cuh"
#define BLAS(x) CHECK_STATUS(x, CUBLAS_STATUS_SUCCESS, "cublas")

static cublasHandle_t handle;
static cudaStream_t stream;
static const int COPIES = 4;

// y [rows, n] = x [rows, k] · wᵀ, w [n, k], row-major; cuBLAS column-major: yᵀ = W · xᵀ.
static void gemm(const __half *w, const __half *x, __half *y, int rows, int k, int n) {
  const float one = 1.f, zero = 0.f;
  BLAS(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &one, w, CUDA_R_16F, k, x, CUDA_R_16F, k, &zero, y, CUDA_R_16F, n,
                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
static void batched(const __half *w, const __half *x, __half *y, int rows, int k, int n, int count) {
  const float one = 1.f, zero = 0.f;
  BLAS(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, k, &one, w, CUDA_R_16F, k, (long long)n * k, x, CUDA_R_16F, k, 0,
                                  &zero, y, CUDA_R_16F, n, (long long)rows * n, count, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}


int main() {
  CUDA(cudaStreamCreate(&stream));
  BLAS(cublasCreate(&handle));
  BLAS(cublasSetStream(handle, stream));
  const size_t maxW = (size_t)2 * 11008 * 4096; // elements of the largest weight set (gate|up)
  __half *w, *x, *y;
  CUDA(cudaMalloc(&w, COPIES * maxW * 2));
  CUDA(cudaMemset(w, 0, COPIES * maxW * 2));
  CUDA(cudaMalloc(&x, 64 * 11008 * 2));
  CUDA(cudaMemset(x, 0, 64 * 11008 * 2));
  CUDA(cudaMalloc(&y, 64 * 2 * 11008 * 2));
  auto W = [&](int i) { return w + (size_t)(i % COPIES) * maxW; };
  printf("{\"cases\": [\n");
  bool first = true;
  // Megabytes of `count` weights of n × k f16.
  auto mb = [](int count, int n, int k) { return count * (double)n * k * 2 / 1e6; };
  for (int rows : {16, 32, 64}) {
    struct Row { const char *name; float us; double mb; };
    Row r[] = {
        {"q,k,v: 3 GEMMs 4096->4096", timeUs(stream, [&](int i) { for (int s = 0; s < 3; s++) gemm(W(i) + (size_t)s * 4096 * 4096, x, y + (size_t)s * rows * 4096, rows, 4096, 4096); }), mb(3, 4096, 4096)},
        {"q|k|v: 1 GEMM 4096->12288", timeUs(stream, [&](int i) { gemm(W(i), x, y, rows, 4096, 12288); }), mb(3, 4096, 4096)},
        {"q,k,v: strided batch of 3", timeUs(stream, [&](int i) { batched(W(i), x, y, rows, 4096, 4096, 3); }), mb(3, 4096, 4096)},
        {"o: 1 GEMM 4096->4096", timeUs(stream, [&](int i) { gemm(W(i), x, y, rows, 4096, 4096); }), mb(1, 4096, 4096)},
        {"gate,up: 2 GEMMs 4096->11008", timeUs(stream, [&](int i) { for (int s = 0; s < 2; s++) gemm(W(i) + (size_t)s * 11008 * 4096, x, y + (size_t)s * rows * 11008, rows, 4096, 11008); }), mb(2, 11008, 4096)},
        {"gate|up: 1 GEMM 4096->22016", timeUs(stream, [&](int i) { gemm(W(i), x, y, rows, 4096, 22016); }), mb(2, 11008, 4096)},
        {"gate,up: strided batch of 2", timeUs(stream, [&](int i) { batched(W(i), x, y, rows, 4096, 11008, 2); }), mb(2, 11008, 4096)},
        {"down: 1 GEMM 11008->4096", timeUs(stream, [&](int i) { gemm(W(i), x, y, rows, 11008, 4096); }), mb(1, 4096, 11008)},
    };
    for (const Row &c : r) {
      printf("%s  {\"rows\": %d, \"case\": \"%s\", \"us\": %.1f, \"GBps\": %.0f}", first ? "" : ",\n", rows, c.name, c.us, c.mb * 1e3 / c.us);
      first = false;
    }
  }
  printf("\n]}\n");
  CUDA(cudaGetLastError());
  return 0;
}
