// Mixture-of-Experts experts, the grouped path (more than 8 rows): moe_permute groups the slots per
// local expert on the device (counts, offsets, slot lists, tiles of ≤ 8 slots), moe.cu's gate/up kernel
// runs over the tiles, moe_down_tiles writes each slot's down projection (f32), and moe_combine sums each
// row's routing-weighted slot results in k order, as the GEMV path does. Also the sigmoid gate of a shared
// expert. Launch shapes depend only on the row count (tiles beyond the step's count exit at once).
#include "moe.cuh"

// Large step, down projection: y[slot, o] = down_e[o]·h[slot] (f32) for the slots of each tile.
template <typename W, typename A>
__device__ void moe_down_tiles(float *y, const A *h, const i64 *table, const int *tiles, const int *order, int hidden, int inter) {
  __shared__ Tile t;
  __shared__ float fin[MOE_WROWS][MOE_TILE];
  grid_dep_wait();
  grid_dep_launch();
  const int o0 = MOE_WROWS * blockIdx.x;
  for (int index = blockIdx.y;; index += gridDim.y) {
    if (threadIdx.x == 0) list_tile(tiles, order, index, 1, t);
    __syncthreads();
    if (t.expert < 0) return;
    const W *wp[MOE_WROWS];
    bool ok[MOE_WROWS];
    down_rows<W>(table, t.expert, o0, hidden, inter, wp, ok);
    tile_dot<MOE_TILE, W, A>(wp, ok, h, t.src, t.n, inter, fin);
    if (threadIdx.x < MOE_WROWS * MOE_TILE) {
      const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
      if (j < t.n && o0 + i < hidden) y[(i64)t.slot[j] * hidden + o0 + i] = fin[i][j];
    }
    __syncthreads();
  }
}

// grid (ceil(hidden/4), tiles), block MOE_THREADS.
#define MOE_TILES_ENTRY(WS, AS, W, A)                                                                                               \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS)                                                                         \
      moe_down_tiles_##WS##_##AS(float *y, const A *h, const i64 *table, const int *tiles, const int *order, int hidden, int inter) { \
    moe_down_tiles<W, A>(y, h, table, tiles, order, hidden, inter);                                                                \
  }

MOE_TILES_ENTRY(f32, f32, float, float)
MOE_TILES_ENTRY(f16, f32, f16_t, float)
MOE_TILES_ENTRY(bf16, f32, bf16_t, float)
MOE_TILES_ENTRY(f16, f16, f16_t, f16_t)
MOE_TILES_ENTRY(bf16, bf16, bf16_t, bf16_t)

// Large step, grouping: slots per local expert (counted with shared atomics), their offsets, the slots
// grouped by expert in `order`, and tiles of ≤ 8 slots of one expert in `tiles` (tiles[0] = count, then
// expert, first, n each). Within an expert the slot order varies from run to run; results do not (each
// slot's sums are its own). One block of 1024 threads; dynamic shared memory 2·nLocal ints.
extern "C" __global__ void __launch_bounds__(1024) moe_permute(int *tiles, int *order, const float *routing, const i64 *table, int nLocal,
                                                               int mapLen, int rows, int topK) {
  extern __shared__ int sh[]; // count[nLocal], cursor[nLocal]
  grid_dep_wait();
  grid_dep_launch();
  int *count = sh, *cursor = sh + nLocal;
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const int slots = rows * topK;
  for (int e = threadIdx.x; e < nLocal; e += blockDim.x) count[e] = 0;
  __syncthreads();
  for (int s = threadIdx.x; s < slots; s += blockDim.x) {
    const int e = local_expert(routing, s, topK, map, mapLen);
    if (e >= 0) atomicAdd(&count[e], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int off = 0, n = 0;
    for (int e = 0; e < nLocal; e++) {
      cursor[e] = off;
      for (int f = 0; f < count[e]; f += MOE_TILE) {
        int *d = tiles + 1 + 3 * n++;
        d[0] = e;
        d[1] = off + f;
        d[2] = min(MOE_TILE, count[e] - f);
      }
      off += count[e];
    }
    tiles[0] = n;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < slots; s += blockDim.x) {
    const int e = local_expert(routing, s, topK, map, mapLen);
    if (e >= 0) order[atomicAdd(&cursor[e], 1)] = s;
  }
}

// Large step, combine: out[r, o] = Σ_k w_rk · y[r·topK + k, o] over the slots routed to local experts, in
// k order (as the small path adds them); rows routed nowhere here get 0. Where a slot's row of y is, by
// layout: 0, the tile path's y [slots, hidden]; 1 (dense), y [experts, rows, hidden] (moe-dense.cu: the slot of
// row r for local expert e is y[e, r]); 2 (grouped, src/cuda/moe-grouped-gemm.ts), row inv[slot] of y, the
// slots grouped by expert. Grid-stride over rows·hidden.
template <typename A>
__device__ void moe_combine(A *out, const float *y, const float *routing, const i64 *table, int nLocal, int mapLen, int rows, int topK, int hidden,
                            int layout, const int *inv) {
  grid_dep_wait();
  grid_dep_launch();
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const i64 n = (i64)rows * hidden;
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const int r = (int)(i / hidden), o = (int)(i - (i64)r * hidden);
    float s = 0.f;
    for (int k = 0; k < topK; k++) {
      const int slot = r * topK + k, e = local_expert(routing, slot, topK, map, mapLen);
      if (e < 0) continue;
      const i64 at = layout == 1 ? (i64)e * n + i : (i64)(layout == 2 ? inv[slot] : slot) * hidden + o;
      s += routing[(i64)r * 2 * topK + topK + k] * y[at];
    }
    out[i] = from_f32<A>(s);
  }
}

// y[r, i] = x[r, i] · sigmoid(gate[r]) (gate [rows, 1]); grid-stride over n = rows·width.
template <typename A> __device__ void sigmoid_gate(A *y, const A *x, const A *gate, int n, int width) {
  grid_dep_wait();
  grid_dep_launch();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const float g = to_f32(gate[i / width]);
    y[i] = from_f32<A>(to_f32(x[i]) * (1.f / (1.f + expf(-g))));
  }
}

#define MOE_ACT_ENTRY(AS, A)                                                                                                         \
  extern "C" __global__ void moe_combine_##AS(A *out, const float *y, const float *routing, const i64 *table, int nLocal, int mapLen, \
                                              int rows, int topK, int hidden, int layout, const int *inv) {                          \
    moe_combine<A>(out, y, routing, table, nLocal, mapLen, rows, topK, hidden, layout, inv);                                        \
  }                                                                                                                                  \
  extern "C" __global__ void sigmoid_gate_##AS(A *y, const A *x, const A *gate, int n, int width) { sigmoid_gate<A>(y, x, gate, n, width); }

MOE_ACT_ENTRY(f32, float)
MOE_ACT_ENTRY(f16, f16_t)
MOE_ACT_ENTRY(bf16, bf16_t)