// A launch that only asks L2 for [base, base + bytes) and ends (l2_prefetch in common.cuh: the sm_90 bulk
// prefetch, a hint nothing waits on). It goes before a tensor-parallel all-reduce: while the ranks meet
// there, DRAM has nothing to do, and the GEMM after the all-reduce then finds the first part of its
// weights in L2 (src/cuda/l2-prefetch.ts says when).
#include "common.cuh"

extern "C" __global__ void l2_prefetch_range(const char *base, int bytes) {
  grid_dep_launch();
  l2_prefetch(base, bytes, blockIdx.x, gridDim.x);
  // Not done before what came before it is: a launch after this one that waits on it (griddepcontrol.wait)
  // relies on everything earlier on the stream being finished too.
  grid_dep_wait();
}
