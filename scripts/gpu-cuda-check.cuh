// For the standalone nvcc benches in scripts/ (built on the GPU machine): a CUDA runtime call that fails
// prints where and why, and the program exits 1 (CUDA; CHECK_STATUS for other libraries' status codes);
// timeUs, the mean time of a launch sequence.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CUDA(x)                                                                          \
  do {                                                                                   \
    cudaError_t e_ = (x);                                                                \
    if (e_ != cudaSuccess) {                                                             \
      fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                           \
    }                                                                                    \
  } while (0)

// A library call whose status is not `ok` (cuBLAS, the driver API) prints where and the status; exit 1.
#define CHECK_STATUS(x, ok, lib)                                                             \
  do {                                                                                       \
    auto s_ = (x);                                                                           \
    if (s_ != (ok)) {                                                                        \
      fprintf(stderr, "%s:%d %s: %s status %d\n", __FILE__, __LINE__, #x, lib, (int)s_);    \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

// Mean µs of go(i) for i = 0..reps−1 on `stream`, timed with CUDA events after `warm` untimed calls.
template <typename F> static float timeUs(cudaStream_t stream, F go, int warm = 4, int reps = 20) {
  cudaEvent_t a, b;
  CUDA(cudaEventCreate(&a));
  CUDA(cudaEventCreate(&b));
  for (int i = 0; i < warm; i++) go(i);
  CUDA(cudaEventRecord(a, stream));
  for (int i = 0; i < reps; i++) go(i);
  CUDA(cudaEventRecord(b, stream));
  CUDA(cudaEventSynchronize(b));
  float ms;
  CUDA(cudaEventElapsedTime(&ms, a, b));
  CUDA(cudaEventDestroy(a));
  CUDA(cudaEventDestroy(b));
  return ms * 1000.f / reps;
}
