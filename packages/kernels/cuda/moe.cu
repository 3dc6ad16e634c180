// Mixture-of-Experts kernels: routing (router GEMV, softmax, top-k, renormalization, per-expert token
// counts), the routed experts' gated MLPs, and the sigmoid gate of a shared expert. Nothing here needs the
// host to see the routing: expert ids are read on the device, so a decode step stays one CUDA graph.
//
// Experts run in "tiles": one expert and up to 8 slots routed to it (a slot is a (row, k) pair, index
// row·topK + k). A block reads 4 weight rows of its tile's expert once, with 16-byte streaming loads, and
// applies them to every slot of the tile, so each expert's weights are read once per tile:
//   - small steps (≤ 8 rows: decode) find their tiles inside every block from the routing (each distinct
//     local expert of the step is one tile: a token picks an expert at most once); the down projection
//     then loops over the step's experts and adds the routing-weighted results per row itself (no atomics,
//     no second pass): the GEMV path, at memory bandwidth;
//   - larger steps first group the slots per expert on the device (moe_permute: counts, offsets, slot
//     lists, tiles of ≤ 8), then gate/up and down run over the tiles, and moe_combine sums each row's
//     routing-weighted slot results in k order.
// Each slot's dot products add the same terms in the same order whichever tile it sits in, so both paths
// give bit-identical results. Routing is always f32 ([rows, 2·topK]: ids as floats, then weights).
//
// The expert table of a node (src/cuda/moe-tables.ts): i64 pointers gate, up, down per local expert, then
// an int map global id → local index (-1: not held here; a row routed there contributes 0).
#include "common.cuh"

#define MOE_THREADS 128
#define MOE_WARPS (MOE_THREADS / 32)
#define MOE_WROWS 4    // weight rows a block reads (MOE_WROWS in src/cuda/moe-launch.ts)
#define MOE_TILE 8     // most slots in a tile
#define MOE_UNROLL 4   // 16-byte vectors per weight row per thread in flight
#define MOE_MAX_TOPK 16
#define MOE_SLOTS (MOE_TILE * MOE_MAX_TOPK) // most slots of a small step

// ---------------------------------------------------------------------------------------------------
// Router: one block (256 threads) per row. Logits in f32 (a warp an expert), softmax in double as the
// reference does (then rounded to f32, as transformers' f32 softmax), top-k by warp argmax with ties to the
// lower id. counts (per expert, u64) gets one per selected expert of every real row: padded rows of a
// decode graph carry slot padSlot and are skipped (slots null: every row counts).
template <typename W, typename A>
__device__ void moe_router(float *out, const W *w, const A *x, int hidden, int experts, int topK, int normalize,
                           unsigned long long *counts, const int *slots, int padSlot) {
  extern __shared__ float prob[]; // [experts]
  __shared__ float chosen[MOE_MAX_TOPK];
  __shared__ int chosenId[MOE_MAX_TOPK];
  grid_dep_wait();
  grid_dep_launch();
  const int r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const A *xr = x + (i64)r * hidden;
  for (int e = warp; e < experts; e += warps) {
    const W *we = w + (i64)e * hidden;
    float s = 0.f;
    for (int i = lane; i < hidden; i += 32) s += to_f32(we[i]) * to_f32(xr[i]);
    s = warp_sum(s);
    if (lane == 0) prob[e] = s;
  }
  __syncthreads();
  if (warp != 0) return;
  float m = NEG_INF;
  for (int e = lane; e < experts; e += 32) m = fmaxf(m, prob[e]);
  m = warp_max(m);
  double sum = 0.0;
  for (int e = lane; e < experts; e += 32) sum += exp((double)prob[e] - (double)m);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  for (int e = lane; e < experts; e += 32) prob[e] = (float)(exp((double)prob[e] - (double)m) / sum);
  __syncwarp();
  for (int k = 0; k < topK; k++) {
    float best = -1.f;
    int bi = 0x7fffffff;
    for (int e = lane; e < experts; e += 32) {
      const float p = prob[e];
      if (p > best) best = p, bi = e; // lanes scan ascending ids: an equal later one never wins
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
    }
    if (lane == 0) {
      if (bi >= experts) bi = 0; // every probability NaN: the output is NaN anyway (see chosen)
      chosen[k] = best;
      chosenId[k] = bi;
      prob[bi] = -2.f; // below every probability: never chosen again
    }
    __syncwarp();
  }
  if (lane == 0) {
    double total = 0.0;
    for (int k = 0; k < topK; k++) total += (double)chosen[k];
    float *o = out + (i64)r * 2 * topK;
    const bool real = slots == nullptr || slots[r] != padSlot;
    for (int k = 0; k < topK; k++) {
      o[k] = (float)chosenId[k];
      o[topK + k] = normalize ? (float)((double)chosen[k] / total) : chosen[k];
      if (counts && real) atomicAdd(counts + chosenId[k], 1ull);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Tiles.
struct Tile {
  int expert; // local index, -1: no work
  int n;      // slots
  int slot[MOE_TILE];
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
__device__ __forceinline__ void small_tile(const int *ids, int slots, int e, Tile &t) {
  t.expert = e;
  t.n = 0;
  for (int s = 0; s < slots && t.n < MOE_TILE; s++)
    if (ids[s] == e) t.slot[t.n++] = s;
}

// Tile `index` of a large step's tile list (tiles[0] = count; then expert, first, n per tile; order: slots
// grouped by expert).
__device__ __forceinline__ void list_tile(const int *tiles, const int *order, int index, Tile &t) {
  t.expert = -1;
  t.n = 0;
  if (index >= tiles[0]) return;
  const int *d = tiles + 1 + 3 * index;
  t.expert = d[0];
  t.n = d[2];
  for (int j = 0; j < t.n; j++) t.slot[j] = order[d[1] + j];
}

// ---------------------------------------------------------------------------------------------------
// Dot products of MOE_WROWS weight rows (length len, W) with up to R input rows (XT), n of them live;
// the block's sums land in fin[i][j] (row i, input j). wp rows that are not ok read nothing.
template <int R, typename W, typename XT>
__device__ void tile_dot(const W *const (&wp)[MOE_WROWS], const bool (&ok)[MOE_WROWS], const XT *const (&xp)[R], int n, int len,
                         float (&fin)[MOE_WROWS][MOE_TILE]) {
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
      uint4 raw[MOE_UNROLL][MOE_WROWS];
#pragma unroll
      for (int u = 0; u < MOE_UNROLL; u++) {
        const int v = base + u * MOE_THREADS;
#pragma unroll
        for (int i = 0; i < MOE_WROWS; i++) raw[u][i] = (ok[i] && v < nv) ? ld_stream16(wp[i] + (i64)v * N) : make_uint4(0u, 0u, 0u, 0u);
      }
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
            load_vec<XT, N>(xp[j] + (i64)v * N, xv);
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
          const float xv = to_f32(xp[j][k]);
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

// Pointers of a local expert's matrices: 0 gate, 1 up, 2 down.
template <typename W> __device__ __forceinline__ const W *expert_matrix(const i64 *table, int e, int which) {
  return reinterpret_cast<const W *>(table[3 * e + which]);
}

// ---------------------------------------------------------------------------------------------------
// h[slot, o] = act(gate_e[o]·x[row]) · (up_e[o]·x[row]) for the slots of a tile, 2 features o a block
// (2 gate + 2 up rows). Small step (tiles null): tile blockIdx.y is the step's blockIdx.y-th expert; large:
// tiles blockIdx.y, blockIdx.y + gridDim.y, ... of the list.
template <int R, typename W, typename A>
__device__ void moe_gate_up(A *h, const A *x, const float *routing, const i64 *table, int nLocal, int mapLen, const int *tiles,
                            const int *order, int rows, int topK, int hidden, int inter, int act) {
  __shared__ Tile t;
  __shared__ int ids[MOE_SLOTS], experts[MOE_SLOTS];
  __shared__ float fin[MOE_WROWS][MOE_TILE];
  grid_dep_wait();
  grid_dep_launch();
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const int o0 = 2 * blockIdx.x;
  int distinct = 0;
  if (!tiles) distinct = small_experts(routing, map, mapLen, rows * topK, topK, ids, experts);
  for (int index = blockIdx.y;; index += gridDim.y) {
    if (threadIdx.x == 0) {
      if (tiles) list_tile(tiles, order, index, t);
      else if (index < distinct) small_tile(ids, rows * topK, experts[index], t);
      else t.expert = -1;
    }
    __syncthreads();
    if (t.expert < 0) return;
    const W *gate = expert_matrix<W>(table, t.expert, 0), *up = expert_matrix<W>(table, t.expert, 1);
    const W *wp[MOE_WROWS];
    bool ok[MOE_WROWS];
#pragma unroll
    for (int i = 0; i < MOE_WROWS; i++) {
      const int o = o0 + (i & 1);
      ok[i] = o < inter;
      wp[i] = (i < 2 ? gate : up) + (i64)(ok[i] ? o : 0) * hidden;
    }
    const A *xp[R];
#pragma unroll
    for (int j = 0; j < R; j++) xp[j] = x + (i64)(j < t.n ? t.slot[j] / topK : 0) * hidden;
    tile_dot<R, W, A>(wp, ok, xp, t.n, hidden, fin);
    if (threadIdx.x < 2 * MOE_TILE) {
      const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
      if (j < t.n && o0 + i < inter) h[(i64)t.slot[j] * inter + o0 + i] = from_f32<A>(act_fn(act, fin[i][j]) * fin[i + 2][j]);
    }
    if (!tiles) return; // a small step's block has one tile
    __syncthreads();
  }
}

// Small step, down projection and combine: out[r, o] = Σ_k w_rk · down_e(rk)[o]·h[r·topK + k] for 4
// features o a block, over every distinct local expert of the step; rows routed nowhere here get 0.
template <int R, typename W, typename A>
__device__ void moe_down_small(A *out, const A *h, const float *routing, const i64 *table, int nLocal, int mapLen, int rows, int topK,
                               int hidden, int inter) {
  __shared__ Tile t;
  __shared__ int ids[MOE_SLOTS], experts[MOE_SLOTS];
  __shared__ float fin[MOE_WROWS][MOE_TILE];
  __shared__ float part[MOE_WROWS][MOE_SLOTS]; // down·h of each slot
  grid_dep_wait();
  grid_dep_launch();
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const int o0 = MOE_WROWS * blockIdx.x, slots = rows * topK;
  const int distinct = small_experts(routing, map, mapLen, slots, topK, ids, experts);
  for (int u = 0; u < distinct; u++) {
    if (threadIdx.x == 0) small_tile(ids, slots, experts[u], t);
    __syncthreads();
    const W *down = expert_matrix<W>(table, t.expert, 2);
    const W *wp[MOE_WROWS];
    bool ok[MOE_WROWS];
#pragma unroll
    for (int i = 0; i < MOE_WROWS; i++) {
      ok[i] = o0 + i < hidden;
      wp[i] = down + (i64)(ok[i] ? o0 + i : 0) * inter;
    }
    const A *xp[R];
#pragma unroll
    for (int j = 0; j < R; j++) xp[j] = h + (i64)(j < t.n ? t.slot[j] : 0) * inter;
    tile_dot<R, W, A>(wp, ok, xp, t.n, inter, fin);
    if (threadIdx.x < MOE_WROWS * MOE_TILE) {
      const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
      if (j < t.n) part[i][t.slot[j]] = fin[i][j];
    }
    __syncthreads();
  }
  for (int q = threadIdx.x; q < MOE_WROWS * rows; q += blockDim.x) {
    const int i = q % MOE_WROWS, r = q / MOE_WROWS;
    if (o0 + i >= hidden) continue;
    float s = 0.f;
    for (int k = 0; k < topK; k++)
      if (ids[r * topK + k] >= 0) s += routing[(i64)r * 2 * topK + topK + k] * part[i][r * topK + k];
    out[(i64)r * hidden + o0 + i] = from_f32<A>(s);
  }
}

// Large step, down projection: y[slot, o] = down_e[o]·h[slot] (f32) for the slots of each tile.
template <typename W, typename A>
__device__ void moe_down_tiles(float *y, const A *h, const i64 *table, const int *tiles, const int *order, int hidden, int inter) {
  __shared__ Tile t;
  __shared__ float fin[MOE_WROWS][MOE_TILE];
  grid_dep_wait();
  grid_dep_launch();
  const int o0 = MOE_WROWS * blockIdx.x;
  for (int index = blockIdx.y;; index += gridDim.y) {
    if (threadIdx.x == 0) list_tile(tiles, order, index, t);
    __syncthreads();
    if (t.expert < 0) return;
    const W *down = expert_matrix<W>(table, t.expert, 2);
    const W *wp[MOE_WROWS];
    bool ok[MOE_WROWS];
#pragma unroll
    for (int i = 0; i < MOE_WROWS; i++) {
      ok[i] = o0 + i < hidden;
      wp[i] = down + (i64)(ok[i] ? o0 + i : 0) * inter;
    }
    const A *xp[MOE_TILE];
#pragma unroll
    for (int j = 0; j < MOE_TILE; j++) xp[j] = h + (i64)(j < t.n ? t.slot[j] : 0) * inter;
    tile_dot<MOE_TILE, W, A>(wp, ok, xp, t.n, inter, fin);
    if (threadIdx.x < MOE_WROWS * MOE_TILE) {
      const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
      if (j < t.n && o0 + i < hidden) y[(i64)t.slot[j] * hidden + o0 + i] = fin[i][j];
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------------------------------------------
// Extern "C" entry points. moe_router grid (rows), block 256, dynamic shared experts·4 bytes;
// moe_gate_up grid (ceil(inter/2), tiles), moe_down grid (ceil(hidden/4)), moe_down_tiles grid
// (ceil(hidden/4), tiles); block MOE_THREADS. R: the most slots a tile of the entry point holds.
#define MOE_ROUTER_ENTRY(WS, AS, W, A)                                                                                      \
  extern "C" __global__ void __launch_bounds__(256) moe_router_##WS##_##AS(float *out, const W *w, const A *x, int hidden,  \
                                                                           int experts, int topK, int normalize,            \
                                                                           unsigned long long *counts, const int *slots,    \
                                                                           int padSlot) {                                   \
    moe_router<W, A>(out, w, x, hidden, experts, topK, normalize, counts, slots, padSlot);                                  \
  }

#define MOE_ENTRY(R, WS, AS, W, A)                                                                                                   \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS)                                                                          \
      moe_gate_up##R##_##WS##_##AS(A *h, const A *x, const float *routing, const i64 *table, int nLocal, int mapLen,                \
                                   const int *tiles, const int *order, int rows, int topK, int hidden, int inter, int act) {         \
    moe_gate_up<R, W, A>(h, x, routing, table, nLocal, mapLen, tiles, order, rows, topK, hidden, inter, act);                       \
  }                                                                                                                                  \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS)                                                                          \
      moe_down##R##_##WS##_##AS(A *out, const A *h, const float *routing, const i64 *table, int nLocal, int mapLen, int rows,       \
                                int topK, int hidden, int inter) {                                                                   \
    moe_down_small<R, W, A>(out, h, routing, table, nLocal, mapLen, rows, topK, hidden, inter);                                     \
  }

#define MOE_TILES_ENTRY(WS, AS, W, A)                                                                                               \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS)                                                                         \
      moe_down_tiles_##WS##_##AS(float *y, const A *h, const i64 *table, const int *tiles, const int *order, int hidden, int inter) { \
    moe_down_tiles<W, A>(y, h, table, tiles, order, hidden, inter);                                                                \
  }

#define MOE_ALL(WS, AS, W, A)  \
  MOE_ROUTER_ENTRY(WS, AS, W, A) \
  MOE_ENTRY(1, WS, AS, W, A)     \
  MOE_ENTRY(2, WS, AS, W, A)     \
  MOE_ENTRY(4, WS, AS, W, A)     \
  MOE_ENTRY(8, WS, AS, W, A)     \
  MOE_TILES_ENTRY(WS, AS, W, A)

// Parity mode (f32 activations, weights as stored) and the 16-bit modes (weights in the activation dtype).
MOE_ALL(f32, f32, float, float)
MOE_ALL(f16, f32, f16_t, float)
MOE_ALL(bf16, f32, bf16_t, float)
MOE_ALL(f16, f16, f16_t, f16_t)
MOE_ALL(bf16, bf16, bf16_t, bf16_t)

// ---------------------------------------------------------------------------------------------------
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
// k order (as the small path adds them); rows routed nowhere here get 0. Grid-stride over rows·hidden.
template <typename A>
__device__ void moe_combine(A *out, const float *y, const float *routing, const i64 *table, int nLocal, int mapLen, int rows, int topK, int hidden) {
  grid_dep_wait();
  grid_dep_launch();
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const i64 n = (i64)rows * hidden;
  for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
    const int r = (int)(i / hidden), o = (int)(i - (i64)r * hidden);
    float s = 0.f;
    for (int k = 0; k < topK; k++) {
      const int slot = r * topK + k;
      if (local_expert(routing, slot, topK, map, mapLen) >= 0) s += routing[(i64)r * 2 * topK + topK + k] * y[(i64)slot * hidden + o];
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
                                              int rows, int topK, int hidden) {                                                      \
    moe_combine<A>(out, y, routing, table, nLocal, mapLen, rows, topK, hidden);                                                     \
  }                                                                                                                                  \
  extern "C" __global__ void sigmoid_gate_##AS(A *y, const A *x, const A *gate, int n, int width) { sigmoid_gate<A>(y, x, gate, n, width); }

MOE_ACT_ENTRY(f32, float)
MOE_ACT_ENTRY(f16, f16_t)
MOE_ACT_ENTRY(bf16, bf16_t)
