// Shared pieces of the Mixture-of-Experts kernels (moe-router.cu, moe.cu, moe-grouped.cu): sizes, the
// tile of one expert and ≤ 8 slots, how a block finds its tile, and the tile's dot products.
//
// Experts run in "tiles": one expert and up to 8 slots routed to it (a slot is a (row, k) pair, index
// row·topK + k). A block reads 4 weight rows of its tile's expert once, with 16-byte streaming loads, and
// applies them to every slot of the tile, so each expert's weights are read once per tile. Each slot's
// dot products add the same terms in the same order whichever tile it sits in.
//
// The expert table of a node (src/cuda/moe-tables.ts): i64 pointers gate, up, down per local expert, then
// an int map global id → local index (-1: not held here; a row routed there contributes 0).
#pragma once
#include "common.cuh"

#define MOE_THREADS 128
#define MOE_WARPS (MOE_THREADS / 32)
#define MOE_WROWS 4    // weight rows a block reads (MOE_WROWS in src/cuda/moe-launch.ts)
#define MOE_TILE 8     // most slots in a tile
#define MOE_UNROLL 4   // 16-byte vectors per weight row per thread in flight
#define MOE_MAX_TOPK 16
#define MOE_SLOTS (MOE_TILE * MOE_MAX_TOPK) // most slots of a small step

// ---------------------------------------------------------------------------------------------------
// Tiles.
struct Tile {
  int expert; // local index, -1: no work
  int n;      // slots
  int slot[MOE_TILE];
  int src[MOE_TILE]; // input row of each slot: slot / div (gate/up: the token's row; down: the slot's h row)
};

__device__ __forceinline__ int local_expert(const float *routing, int s, int topK, const int *map, int mapLen) {
  const int r = s / topK, k = s - r * topK;
  const float f = routing[(i64)r * 2 * topK + k];
  const int id = (int)f;
  return (f >= 0.f && id < mapLen) ? map[id] : -1;
}

// A small step's distinct local experts in the order of their first slot: ids[s] (local expert of slot s)
// and order[u] (the u-th distinct one); returns how many. Every thread calls it.
__device__ int small_experts(const float *routing, const int *map, int mapLen, int slots, int topK, int *ids, int *order) {
  __shared__ int count;
  for (int s = threadIdx.x; s < slots; s += blockDim.x) ids[s] = local_expert(routing, s, topK, map, mapLen);
  __syncthreads();
  if (threadIdx.x == 0) {
    int n = 0;
    for (int s = 0; s < slots; s++) {
      const int e = ids[s];
      bool seen = e < 0;
      for (int u = 0; u < n && !seen; u++) seen = order[u] == e;
      if (!seen) order[n++] = e;
    }
    count = n;
  }
  __syncthreads();
  return count;
}

// The slots of a small step routed to local expert e, ascending.
__device__ __forceinline__ void small_tile(const int *ids, int slots, int e, int div, Tile &t) {
  t.expert = e;
  t.n = 0;
  for (int s = 0; s < slots && t.n < MOE_TILE; s++)
    if (ids[s] == e) {
      t.slot[t.n] = s;
      t.src[t.n++] = s / div;
    }
}

// Tile `index` of a large step's tile list (tiles[0] = count; then expert, first, n per tile; order: slots
// grouped by expert).
__device__ __forceinline__ void list_tile(const int *tiles, const int *order, int index, int div, Tile &t) {
  t.expert = -1;
  t.n = 0;
  if (index >= tiles[0]) return;
  const int *d = tiles + 1 + 3 * index;
  t.expert = d[0];
  t.n = d[2];
  for (int j = 0; j < t.n; j++) {
    t.slot[j] = order[d[1] + j];
    t.src[j] = t.slot[j] / div;
  }
}

// Tile `index` of this block into t (by thread 0, then a barrier): the large step's list entry (tiles not null),
// or the small step's index-th distinct expert (t.expert = -1 past the last: the block has no work).
__device__ __forceinline__ void block_tile(const int *tiles, const int *order, int index, const int *ids, const int *experts, int distinct, int slots,
                                           int topK, Tile &t) {
  if (threadIdx.x == 0) {
    if (tiles) list_tile(tiles, order, index, topK, t);
    else if (index < distinct) small_tile(ids, slots, experts[index], topK, t);
    else t.expert = -1;
  }
  __syncthreads();
}

// ---------------------------------------------------------------------------------------------------
// One pass of weight loads of tile_dot: MOE_UNROLL 16-byte vectors of each of the MOE_WROWS rows, from
// vector `base` (a thread's first pass: base = threadIdx.x). Rows that are not ok read nothing.
typedef uint4 TileRaw[MOE_UNROLL][MOE_WROWS];
template <typename W>
__device__ __forceinline__ void tile_load(TileRaw &raw, const W *const (&wp)[MOE_WROWS], const bool (&ok)[MOE_WROWS], int base, int nv) {
  constexpr int N = Vec16<W>::N;
#pragma unroll
  for (int u = 0; u < MOE_UNROLL; u++) {
    const int v = base + u * MOE_THREADS;
#pragma unroll
    for (int i = 0; i < MOE_WROWS; i++) raw[u][i] = (ok[i] && v < nv) ? ld_small16(wp[i] + (i64)v * N) : make_uint4(0u, 0u, 0u, 0u);
  }
}

// Dot products of MOE_WROWS weight rows (length len, W) with up to R input rows x + src[j]·len (XT, src in
// shared memory: row pointers in registers would spill at R = 8), n of them live; the block's sums land in
// fin[i][j] (row i, input j). wp rows that are not ok read nothing. `preloaded`: raw already holds the
// first pass's loads (tile_load at base threadIdx.x, issued before griddepcontrol.wait), whole-vector rows only.
template <int R, typename W, typename XT>
__device__ __forceinline__ void tile_dot(const W *const (&wp)[MOE_WROWS], const bool (&ok)[MOE_WROWS], const XT *x, const int *src, int n, int len,
                                         float (&fin)[MOE_WROWS][MOE_TILE], TileRaw &raw, bool preloaded) {
  __shared__ float red[MOE_WARPS][32];
  float acc[MOE_WROWS][R];
#pragma unroll
  for (int i = 0; i < MOE_WROWS; i++)
#pragma unroll
    for (int j = 0; j < R; j++) acc[i][j] = 0.f;
  constexpr int N = Vec16<W>::N;
  if (len % N == 0) {
    const int nv = len / N;
    for (int base = threadIdx.x; base < nv; base += MOE_THREADS * MOE_UNROLL) {
      if (!(preloaded && base == (int)threadIdx.x)) tile_load<W>(raw, wp, ok, base, nv);
#pragma unroll
      for (int u = 0; u < MOE_UNROLL; u++) {
        const int v = base + u * MOE_THREADS;
        if (v >= nv) break;
        float wf[MOE_WROWS][N];
#pragma unroll
        for (int i = 0; i < MOE_WROWS; i++) widen16<W>(raw[u][i], wf[i]);
#pragma unroll
        for (int j = 0; j < R; j++) {
          if (j < n) {
            float xv[N];
            load_act<XT, N>(x + (i64)src[j] * len + (i64)v * N, xv);
#pragma unroll
            for (int i = 0; i < MOE_WROWS; i++) {
              float s = 0.f;
#pragma unroll
              for (int k = 0; k < N; k++) s += wf[i][k] * xv[k];
              acc[i][j] += s;
            }
          }
        }
      }
    }
  } else {
    for (int k = threadIdx.x; k < len; k += MOE_THREADS) {
      float wf[MOE_WROWS];
#pragma unroll
      for (int i = 0; i < MOE_WROWS; i++) wf[i] = ok[i] ? to_f32(wp[i][k]) : 0.f;
#pragma unroll
      for (int j = 0; j < R; j++) {
        if (j < n) {
          const float xv = to_f32(x[(i64)src[j] * len + k]);
#pragma unroll
          for (int i = 0; i < MOE_WROWS; i++) acc[i][j] += wf[i] * xv;
        }
      }
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float v[32];
#pragma unroll
  for (int q = 0; q < 32; q++) v[q] = q < MOE_WROWS * R ? acc[q / R][q % R] : 0.f;
  red[warp][lane] = warp_transpose_sum(v);
  __syncthreads();
  if (threadIdx.x < MOE_WROWS * R) {
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < MOE_WARPS; w++) s += red[w][threadIdx.x];
    fin[threadIdx.x / R][threadIdx.x % R] = s;
  }
  __syncthreads();
}

template <int R, typename W, typename XT>
__device__ __forceinline__ void tile_dot(const W *const (&wp)[MOE_WROWS], const bool (&ok)[MOE_WROWS], const XT *x, const int *src, int n, int len,
                                         float (&fin)[MOE_WROWS][MOE_TILE]) {
  TileRaw raw;
  tile_dot<R, W, XT>(wp, ok, x, src, n, len, fin, raw, false);
}

// Pointers of a local expert's matrices: 0 gate, 1 up, 2 down.
template <typename W> __device__ __forceinline__ const W *expert_matrix(const i64 *table, int e, int which) {
  return reinterpret_cast<const W *>(table[3 * e + which]);
}

// The MOE_WROWS rows o0 … of expert e's down matrix [hidden, inter] a block reads (rows past hidden point at
// row 0 and are marked not ok), for tile_dot.
template <typename W>
__device__ __forceinline__ void down_rows(const i64 *table, int e, int o0, int hidden, int inter, const W *(&wp)[MOE_WROWS], bool (&ok)[MOE_WROWS]) {
  const W *down = expert_matrix<W>(table, e, 2);
#pragma unroll
  for (int i = 0; i < MOE_WROWS; i++) {
    ok[i] = o0 + i < hidden;
    wp[i] = down + (i64)(ok[i] ? o0 + i : 0) * inter;
  }
}

