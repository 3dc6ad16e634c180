// Mixture-of-Experts experts, the dense path for batch steps (9–64 rows; src/cuda/moe-dense.ts): every
// local expert runs over every row of the step as strided-batched cuBLAS GEMMs on the tensor cores (gate|up
// of all experts as one batch, down as another), the activation below and moe_combine (moe-grouped.cu,
// dense) do the rest. A row's slot for
// expert e is the row itself (a token picks an expert at most once), so nothing is permuted: rows not routed
// to e are computed and never read. At these sizes the step reads the experts' weights once either way;
// the GEMMs' extra rows cost tensor-core time that the weight stream hides, where the GEMV-like tile path
// spent its time on CUDA-core arithmetic (a 64-row Mixtral-shape step: ~1 ms a layer).
#include "moe.cuh"

// h[e, r, o] = act(gu[2e, r, o]) · gu[2e + 1, r, o] (gate and up of expert e, f32) rounded to A, as the
// other paths round h. Grid-stride over experts·rows·inter.
template <typename A> __device__ void moe_dense_act(A *h, const float *gu, int experts, int rows, int inter, int act) {
  grid_dep_wait();
  grid_dep_launch();
  const i64 per = (i64)rows * inter, n = per * experts;
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const i64 e = i / per, j = i - e * per;
    h[i] = from_f32<A>(act_fn(act, gu[2 * e * per + j]) * gu[(2 * e + 1) * per + j]);
  }
}

#define MOE_DENSE_ENTRY(AS, A)                                                                                                       \
  extern "C" __global__ void moe_dense_act_##AS(A *h, const float *gu, int experts, int rows, int inter, int act) {                   \
    moe_dense_act<A>(h, gu, experts, rows, inter, act);                                                                             \
  }

MOE_DENSE_ENTRY(f32, float)
MOE_DENSE_ENTRY(f16, f16_t)
MOE_DENSE_ENTRY(bf16, bf16_t)
