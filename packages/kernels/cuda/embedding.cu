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
