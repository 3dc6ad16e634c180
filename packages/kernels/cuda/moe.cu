// Mixture-of-Experts experts, the GEMV path and its gate/up kernel (moe.cuh says what a tile is). Nothing
// here needs the host to see the routing: expert ids are read on the device, so a decode step stays one
// CUDA graph.
//   - small steps (≤ 8 rows: decode) find their tiles inside every block from the routing (each distinct
//     local expert of the step is one tile: a token picks an expert at most once); gate and up are read
//     side by side with the activation fused, then the down projection loops over the step's experts and
//     adds the routing-weighted results per row itself, in k order (no atomics, no second pass);
//   - larger steps (moe-grouped.cu) run the same gate/up kernel over tiles grouped on the device.
#include "mma.cuh"
#include "moe.cuh"

// The MOE_WROWS weight rows of gate/up feature pair p (gate o, o+1, then up o, o+1).
template <typename W>
__device__ __forceinline__ void pair_rows(const W *gate, const W *up, int p, int hidden, int inter, const W *(&wp)[MOE_WROWS], bool (&ok)[MOE_WROWS]) {
#pragma unroll
  for (int i = 0; i < MOE_WROWS; i++) {
    const int o = 2 * p + (i & 1);
    ok[i] = o < inter;
    wp[i] = (i < 2 ? gate : up) + (i64)(ok[i] ? o : 0) * hidden;
  }
}

// h[slot, o0 + i] = act(gate · x) · (up · x) of a tile's slots for the pair's 2 features (fin rows 0–1 gate, 2–3 up).
template <typename A>
__device__ __forceinline__ void gate_up_store(A *h, const Tile &t, const float (&fin)[MOE_WROWS][MOE_TILE], int o0, int inter, int act) {
  if (threadIdx.x < 2 * MOE_TILE) {
    const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
    if (j < t.n && o0 + i < inter) h[(i64)t.slot[j] * inter + o0 + i] = from_f32<A>(act_fn(act, fin[i][j]) * fin[i + 2][j]);
  }
}

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
    block_tile(tiles, order, index, ids, experts, distinct, rows * topK, topK, t);
    if (t.expert < 0) return;
    const W *gate = expert_matrix<W>(table, t.expert, 0), *up = expert_matrix<W>(table, t.expert, 1);
    const W *wp[MOE_WROWS];
    bool ok[MOE_WROWS];
    pair_rows<W>(gate, up, blockIdx.x, hidden, inter, wp, ok);
    tile_dot<R, W, A>(wp, ok, x, t.src, t.n, hidden, fin);
    gate_up_store<A>(h, t, fin, o0, inter, act);
    if (!tiles) return; // a small step's block has one tile
    __syncthreads();
  }
}

// A down tile's sums into part (feature i, slot): each slot's down·h.
__device__ __forceinline__ void down_part(const Tile &t, const float (&fin)[MOE_WROWS][MOE_TILE], float (&part)[MOE_WROWS][MOE_SLOTS]) {
  if (threadIdx.x < MOE_WROWS * MOE_TILE) {
    const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
    if (j < t.n) part[i][t.slot[j]] = fin[i][j];
  }
}

// out[r, o0 + i] = Σ_k w_rk · part[i][r·topK + k] in k order (slots routed nowhere here add nothing), for the
// block's WR features.
template <typename A, int WR>
__device__ __forceinline__ void down_combine(A *out, const float *routing, const int *ids, const float (&part)[WR][MOE_SLOTS], int o0, int rows,
                                             int topK, int hidden) {
  for (int q = threadIdx.x; q < WR * rows; q += blockDim.x) {
    const int i = q % WR, r = q / WR;
    if (o0 + i >= hidden) continue;
    float s = 0.f;
    for (int k = 0; k < topK; k++)
      if (ids[r * topK + k] >= 0) s += routing[(i64)r * 2 * topK + topK + k] * part[i][r * topK + k];
    out[(i64)r * hidden + o0 + i] = from_f32<A>(s);
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
  // Before the wait: the routing is complete (the gate/up kernel before this one waited for the router
  // before it let this kernel start), so the step's experts are known and the first one's weights load
  // while the gate/up kernel finishes; h is read only after the wait.
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const int o0 = MOE_WROWS * blockIdx.x, slots = rows * topK;
  const int distinct = small_experts(routing, map, mapLen, slots, topK, ids, experts);
  const bool preload = distinct > 0 && inter % Vec16<W>::N == 0;
  TileRaw raw;
  if (preload) {
    const W *wp[MOE_WROWS];
    bool ok[MOE_WROWS];
    down_rows<W>(table, experts[0], o0, hidden, inter, wp, ok);
    tile_load<W>(raw, wp, ok, threadIdx.x, inter / Vec16<W>::N);
  }
  grid_dep_wait();
  grid_dep_launch();
  for (int u = 0; u < distinct; u++) {
    if (threadIdx.x == 0) small_tile(ids, slots, experts[u], 1, t);
    __syncthreads();
    const W *wp[MOE_WROWS];
    bool ok[MOE_WROWS];
    down_rows<W>(table, t.expert, o0, hidden, inter, wp, ok);
    tile_dot<R, W, A>(wp, ok, h, t.src, t.n, inter, fin, raw, preload && u == 0);
    down_part(t, fin, part);
    __syncthreads();
  }
  down_combine<A, MOE_WROWS>(out, routing, ids, part, o0, rows, topK, hidden);
}

// moe_gate_up grid (ceil(inter/2), tiles), moe_down grid (ceil(hidden/4)); block MOE_THREADS. R: the most
// slots a tile of the entry point holds (the grouped path uses R = 8).
#define MOE_ENTRY(R, WS, AS, W, A)                                                                                                   \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS, 1)                                                                        \
      moe_gate_up##R##_##WS##_##AS(A *h, const A *x, const float *routing, const i64 *table, int nLocal, int mapLen,                \
                                   const int *tiles, const int *order, int rows, int topK, int hidden, int inter, int act) {         \
    moe_gate_up<R, W, A>(h, x, routing, table, nLocal, mapLen, tiles, order, rows, topK, hidden, inter, act);                       \
  }                                                                                                                                  \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS, 1)                                                                        \
      moe_down##R##_##WS##_##AS(A *out, const A *h, const float *routing, const i64 *table, int nLocal, int mapLen, int rows,       \
                                int topK, int hidden, int inter) {                                                                   \
    moe_down_small<R, W, A>(out, h, routing, table, nLocal, mapLen, rows, topK, hidden, inter);                                     \
  }

#define MOE_ALL(WS, AS, W, A) \
  MOE_ENTRY(1, WS, AS, W, A)  \
  MOE_ENTRY(2, WS, AS, W, A)  \
  MOE_ENTRY(4, WS, AS, W, A)  \
  MOE_ENTRY(8, WS, AS, W, A)

// Parity mode (f32 activations, weights as stored) and the 16-bit modes (weights in the activation dtype).
MOE_ALL(f32, f32, float, float)
MOE_ALL(f16, f32, f16_t, float)
MOE_ALL(bf16, f32, bf16_t, float)
MOE_ALL(f16, f16, f16_t, f16_t)
MOE_ALL(bf16, bf16, bf16_t, bf16_t)

// ---------------------------------------------------------------------------------------------------
// Small steps of 2–8 rows on the tensor cores (moe_gate_up_m_*, moe_down_m_*: the 16-bit modes, weights in the
// activation dtype, rows of whole 16-byte vectors; moe-launch.ts). The FMA entries above hold 162–168 registers
// at R = 8 (3 blocks an SM, nvcc 13) and spend 8 FP32 FMAs a weight element: a Mixtral tp-4 rank's 8-row step
// took 16.7 ms for ~5 of weight reads (H200, session 20). A tile (one expert, ≤ 8 slots) is exactly the 8 columns of
// mma.sync m16n8k16 (mma.cuh): thread (g, t) reads slot g's input row. A gate/up block takes 8 features, their
// 8 gate rows the MMA's rows g and their 8 up rows g + 8, so the activation pairs them in one thread's
// neighbourhood; a down block takes 16 features of each of the step's experts in turn, as moe_down_small does.
#define MOE_MMA_UNROLL 8 // chunks a warp has in flight (mma_rows' U)
static_assert(MOE_THREADS == MMA_WR * MOE_TILE, "a thread a sum of the 16 × 8 product");

// The block's 16 × 8 sums, each warp's d over its chunks added in warp order, into fin [row][slot]; ends
// after a barrier.
__device__ __forceinline__ void mma_block_sums(const float (&d)[4], float (&red)[MOE_WARPS][MMA_WR][MOE_TILE], float (&fin)[MMA_WR][MOE_TILE]) {
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  mma_store_sums(red[warp], d, g, t);
  __syncthreads();
  const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
  float s = 0.f;
#pragma unroll
  for (int w = 0; w < MOE_WARPS; w++) s += red[w][i][j];
  fin[i][j] = s;
  __syncthreads();
}

// moe_gate_up's work with 8 features a block (grid: ceil(inter / 8), tiles).
template <typename A>
__device__ void moe_gate_up_mma(A *h, const A *x, const float *routing, const i64 *table, int nLocal, int mapLen, const int *tiles,
                                const int *order, int rows, int topK, int hidden, int inter, int act) {
  __shared__ Tile tt;
  __shared__ int ids[MOE_SLOTS], experts[MOE_SLOTS];
  __shared__ float red[MOE_WARPS][MMA_WR][MOE_TILE], fin[MMA_WR][MOE_TILE];
  grid_dep_wait();
  grid_dep_launch();
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int o0 = 8 * blockIdx.x, o = o0 + g; // this thread's gate and up feature (the MMA's rows g and g + 8)
  int distinct = 0;
  if (!tiles) distinct = small_experts(routing, map, mapLen, rows * topK, topK, ids, experts);
  for (int index = blockIdx.y;; index += gridDim.y) {
    block_tile(tiles, order, index, ids, experts, distinct, rows * topK, topK, tt);
    if (tt.expert < 0) return;
    const i64 row = (i64)(o < inter ? o : 0) * hidden;
    const bool xok = g < tt.n;
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    mma_rows<MOE_MMA_UNROLL, A>(d, expert_matrix<A>(table, tt.expert, 0) + row, expert_matrix<A>(table, tt.expert, 1) + row,
                                x + (i64)(xok ? tt.src[g] : 0) * hidden, xok, hidden / 8, warp, MOE_WARPS, t, false);
    mma_block_sums(d, red, fin);
    if (threadIdx.x < 8 * MOE_TILE) { // h[slot j, o0 + i] = act(gate) · up
      const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
      if (j < tt.n && o0 + i < inter) h[(i64)tt.slot[j] * inter + o0 + i] = from_f32<A>(act_fn(act, fin[i][j]) * fin[i + 8][j]);
    }
    if (!tiles) return; // a small step's block has one tile
    __syncthreads();
  }
}

// moe_down_small's work with 16 features a block (grid: ceil(hidden / 16)). The step's experts are known before
// the wait (see moe_down_small), so the first one's first round of weights loads while the gate/up kernel drains.
template <typename A>
__device__ void moe_down_mma(A *out, const A *h, const float *routing, const i64 *table, int nLocal, int mapLen, int rows, int topK,
                             int hidden, int inter) {
  __shared__ Tile tt;
  __shared__ int ids[MOE_SLOTS], experts[MOE_SLOTS];
  __shared__ float red[MOE_WARPS][MMA_WR][MOE_TILE], fin[MMA_WR][MOE_TILE];
  __shared__ float part[MMA_WR][MOE_SLOTS]; // down·h of each slot
  const int *map = reinterpret_cast<const int *>(table + 3 * nLocal);
  const int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
  const int o0 = MMA_WR * blockIdx.x, oa = o0 + g, ob = o0 + g + 8, slots = rows * topK;
  const int distinct = small_experts(routing, map, mapLen, slots, topK, ids, experts);
  grid_dep_launch();
  if (distinct == 0) grid_dep_wait();
  for (int u = 0; u < distinct; u++) {
    if (threadIdx.x == 0) small_tile(ids, slots, experts[u], 1, tt);
    __syncthreads();
    const A *down = expert_matrix<A>(table, tt.expert, 2);
    const bool xok = g < tt.n;
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    mma_rows<MOE_MMA_UNROLL, A>(d, down + (i64)(oa < hidden ? oa : 0) * inter, down + (i64)(ob < hidden ? ob : 0) * inter,
                                h + (i64)(xok ? tt.src[g] : 0) * inter, xok, inter / 8, warp, MOE_WARPS, t, u == 0);
    mma_block_sums(d, red, fin);
    const int i = threadIdx.x / MOE_TILE, j = threadIdx.x % MOE_TILE;
    if (j < tt.n) part[i][tt.slot[j]] = fin[i][j];
    __syncthreads();
  }
  down_combine<A, MMA_WR>(out, routing, ids, part, o0, rows, topK, hidden);
}

// Parameters as moe_gate_up / moe_down's; rows not whole 16-byte vectors trap (moe-launch.ts never sends them).
#define MOE_MMA_ENTRY(S, A)                                                                                                         \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS, 4)                                                                        \
      moe_gate_up_m_##S##_##S(A *h, const A *x, const float *routing, const i64 *table, int nLocal, int mapLen, const int *tiles,     \
                              const int *order, int rows, int topK, int hidden, int inter, int act) {                                \
    if (hidden % 8 != 0) __trap();                                                                                                   \
    moe_gate_up_mma<A>(h, x, routing, table, nLocal, mapLen, tiles, order, rows, topK, hidden, inter, act);                         \
  }                                                                                                                                  \
  extern "C" __global__ void __launch_bounds__(MOE_THREADS, 4)                                                                        \
      moe_down_m_##S##_##S(A *out, const A *h, const float *routing, const i64 *table, int nLocal, int mapLen, int rows, int topK,  \
                           int hidden, int inter) {                                                                                  \
    if (inter % 8 != 0) __trap();                                                                                                    \
    moe_down_mma<A>(out, h, routing, table, nLocal, mapLen, rows, topK, hidden, inter);                                             \
  }
MOE_MMA_ENTRY(f16, f16_t)
MOE_MMA_ENTRY(bf16, bf16_t)
