// Embedding lookup: out[r, :] = table[ids[r] + offset - shardStart, :] * scale, table in its stored dtype.
// Ids are range-checked on the host before launch; a row outside the table is a vocab-parallel shard's
// miss (another rank holds it) and is written as zeros, which the all-reduce after the lookup fills in.
#include "common.cuh"

// W: stored table type; A: activation type of out.
template <typename W, typename A>
__device__ void embedding(A *out, const W *table, const int *ids, int dim, int offset, float scale, int shardStart, int tableRows) {
  grid_dep_wait();
  grid_dep_launch();
  const int r = blockIdx.x; // one block per row
  const int index = ids[r] + offset - shardStart;
  A *dst = out + (i64)r * dim;
  if (index < 0 || index >= tableRows) {
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = from_f32<A>(0.0f);
    return;
  }
  const W *src = table + (i64)index * dim;
  for (int j = threadIdx.x; j < dim; j += blockDim.x) dst[j] = from_f32<A>(to_f32(src[j]) * scale);
}

// out [rows, dim]; table [tableRows, dim] holding vocabulary rows from shardStart (0 unless sharded);
// ids [rows]. grid (rows), block (any multiple of 32).
#define EMBEDDING_ENTRY(WS, AS, W, A)                                                                                 \
  extern "C" __global__ void embedding_##WS##_##AS(A *out, const W *table, const int *ids, int dim, int offset, float scale, \
                                                   int shardStart, int tableRows) {                                   \
    embedding<W, A>(out, table, ids, dim, offset, scale, shardStart, tableRows);                                      \
  }

EMBEDDING_ENTRY(f32, f32, float, float)
EMBEDDING_ENTRY(f16, f32, f16_t, float)
EMBEDDING_ENTRY(bf16, f32, bf16_t, float)
EMBEDDING_ENTRY(f16, f16, f16_t, f16_t)
EMBEDDING_ENTRY(bf16, bf16, bf16_t, bf16_t)

// out[r, :] = a + b, a and b two lookups as embedding() makes them (each scaled and rounded to A), added
// in f32 and rounded once more, as the add kernel after two embedding launches does: GPT-2's token and
// position embeddings in one launch. The tables never change and the ids are the step's metadata, so the
// lookups are read before waiting on the kernel before (PDL); only the write waits.
template <typename W, typename A>
__device__ void embedding_sum(A *out, const W *ta, const int *idsA, int offsetA, float scaleA, const W *tb, const int *idsB, int offsetB,
                              float scaleB, int dim) {
  const int r = blockIdx.x; // one block per row
  const W *a = ta + (i64)(idsA[r] + offsetA) * dim;
  const W *b = tb + (i64)(idsB[r] + offsetB) * dim;
  A *dst = out + (i64)r * dim;
  // Element j of a and b, each as its own embedding launch would store it.
  auto sum = [&](int j) { return to_f32(from_f32<A>(to_f32(a[j]) * scaleA)) + to_f32(from_f32<A>(to_f32(b[j]) * scaleB)); };
  constexpr int K = 4; // elements a thread holds before the wait (dim ≤ 4 × blockDim in one pass)
  float v[K];
#pragma unroll
  for (int k = 0; k < K; k++) {
    const int j = threadIdx.x + k * blockDim.x;
    v[k] = j < dim ? sum(j) : 0.f;
  }
  grid_dep_wait();
  grid_dep_launch();
#pragma unroll
  for (int k = 0; k < K; k++) {
    const int j = threadIdx.x + k * blockDim.x;
    if (j < dim) dst[j] = from_f32<A>(v[k]);
  }
  for (int j = threadIdx.x + K * blockDim.x; j < dim; j += blockDim.x) dst[j] = from_f32<A>(sum(j));
}

// out [rows, dim]; ta, tb [*, dim] in the stored dtype; idsA, idsB [rows] (ids checked on the host).
// grid (rows), block (any multiple of 32).
#define EMBEDDING_SUM_ENTRY(WS, AS, W, A)                                                                                          \
  extern "C" __global__ void embedding_sum_##WS##_##AS(A *out, const W *ta, const int *idsA, int offsetA, float scaleA, const W *tb, \
                                                       const int *idsB, int offsetB, float scaleB, int dim) {                        \
    embedding_sum<W, A>(out, ta, idsA, offsetA, scaleA, tb, idsB, offsetB, scaleB, dim);                                         \
  }

EMBEDDING_SUM_ENTRY(f32, f32, float, float)
EMBEDDING_SUM_ENTRY(f16, f32, f16_t, float)
EMBEDDING_SUM_ENTRY(bf16, f32, bf16_t, float)
EMBEDDING_SUM_ENTRY(f16, f16, f16_t, f16_t)
EMBEDDING_SUM_ENTRY(bf16, bf16, bf16_t, bf16_t)
