// One-shot all-reduce over peer memory (NVLink), for the small messages of tensor-parallel decode where
// NCCL's fixed cost dominates. The ranks are threads of one process, so every rank's registered area is
// addressable from every GPU once peer access is on; `table` (on this device) holds each rank's area.
//
// A rank's area: [signals | data half 0 | data half 1]. Each block b of each rank
//   1. stages its chunks of x into its own data half (epoch & 1),
//   2. writes the epoch to flags[b][rank] of every rank (release, system scope) and waits until every
//      rank's flags[b][peer] reached the epoch (acquire, system scope),
//   3. sums the same chunks of every rank's half in rank order 0..ranks-1 (f32 accumulation, one rounding)
//      into out, so every rank gets bit-identical results.
// The epoch is a per-block counter kept in the rank's own signals and advanced by the kernel itself, so a
// CUDA graph replaying the launch stays in step. No end barrier: the next call stages into the other half,
// and the call after that may overwrite this one's half only once every peer has entered that next call
// (its flag), i.e. finished this one, because every launch uses the same grid (the host fixes it per
// communicator) and grid_dep_wait() comes before any staging or flag write (the dependents' early start,
// griddepcontrol.launch_dependents at entry, lets them load weights, never read or write these halves).
// Chunks are assigned to blocks from the element count alone, so a block's chunks are the same on every
// rank whatever the alignment of x and out.
//
// Residual (optional, null for none): out = residual + Σ x, rounded as an all-reduce followed by the add
// kernel would round them (the sum to A, then the add to A), so a row-parallel projection's all-reduce and
// the residual connection after it are one launch and the same bits as two. A thread reads the residual
// only at the chunks it writes, so out may be the residual's (or x's) buffer.
//
// Two-shot (peer_all_reduce_2s_*, for mid sizes: each rank reads its peers' data once instead of all of
// it): after the first barrier, rank r sums only the chunks c with c % ranks == r (same f32 rank-order
// sums) and writes the rounded result over its own staged chunk (no peer reads that chunk of r's half:
// it reads only the chunks it owns); a second barrier (flags2), then every rank copies each chunk from
// its owner. Results are bit-identical to the one-shot kernel's. Both kernels share the epochs and may
// alternate on one registration.
//
// Lamport (peer_all_reduce_ll_*, for the smallest messages: decode's hidden-sized all-reduces): no barrier
// and no flags. A third region of each area holds 3 generations × ranks slots, every word of which starts
// as the sentinel 0x80008000 (each 16-bit half -0.0; one f32 denormal). Call e (the block's own LL epoch)
// pushes this rank's chunks of x into slot `rank` of generation e % 3 of every rank's area (stores over
// NVLink, sentinel values replaced: -0.0 → +0.0 in 16-bit types, the f32 sentinel → -0.0), then each thread
// polls its chunks of every slot of its own generation e % 3 until no element is the sentinel (the data is
// its own arrival flag) and sums them as the one-shot kernel does (same bits, but a -0.0 sum is +0.0).
// Last it restores the sentinel in the chunks that call e - 1 filled (generation (e + 2) % 3, whose size
// the block kept in its signals): every peer finished writing them before this rank could finish call
// e - 1, and none writes them again before call e + 2, which needs this rank's call e + 1, which starts
// after this kernel has ended.
// Pushed (x null): a row-parallel GEMV before it stored its output into the slots itself (ll_push4 in
// peer-ll.cuh, with this call's generation), so the kernel only polls, sums and clears: the same bits, one
// NVLink round trip and one read of x fewer. The argument above holds for those pushes too: the GEMV
// pushes after its grid_dep_wait, so after this rank's previous Lamport call has ended.
#include "peer-ll.cuh"

__device__ __forceinline__ void st_release_sys(u32 *p, u32 v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ u32 ld_acquire_sys(const u32 *p) {
  u32 v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Barrier of block b with block b of every rank: thread t < ranks signals rank t and waits for it.
// Signed difference: epochs wrap after 2^32 calls, and a peer may already be one epoch ahead.
// `second` picks flags2 (the two-shot kernel's second barrier).
__device__ __forceinline__ void peer_barrier(const unsigned long long *table, PeerSignals *own, int rank, int ranks, u32 epoch, bool second = false) {
  __syncthreads(); // every thread's writes are done before the flag releases them
  if ((int)threadIdx.x < ranks) {
    PeerSignals *peer = reinterpret_cast<PeerSignals *>(table[threadIdx.x]);
    st_release_sys(second ? &peer->flags2[blockIdx.x][rank] : &peer->flags[blockIdx.x][rank], epoch);
    const u32 *mine = second ? &own->flags2[blockIdx.x][threadIdx.x] : &own->flags[blockIdx.x][threadIdx.x];
    while ((int)(ld_acquire_sys(mine) - epoch) < 0) {
    }
  }
  __syncthreads();
}

template <typename A> __device__ __forceinline__ A *data_half(unsigned long long area, u32 epoch, int half_bytes) {
  return reinterpret_cast<A *>(area + PEER_SIGNAL_BYTES + (unsigned long long)(epoch & 1u) * half_bytes);
}

// Sum of chunk i (V elements from element i) over every rank's half, in rank order, in f32.
template <typename A> __device__ __forceinline__ void sum_chunk(float *acc, const unsigned long long *table, int ranks, u32 epoch, int half_bytes, int i) {
  constexpr int V = Vec16<A>::N;
#pragma unroll
  for (int k = 0; k < V; k++) acc[k] = 0.f;
  for (int r = 0; r < ranks; r++) {
    const A *src = data_half<A>(table[r], epoch, half_bytes) + i; // 16-byte aligned: halves are
    float v[V];
    // L2, not L1 (.cg): a half is rewritten every other call, and a stale L1 line must never serve it.
    // A short tail chunk reads past n, inside the half.
    widen16<A>(__ldcg(reinterpret_cast<const uint4 *>(src)), v);
#pragma unroll
    for (int k = 0; k < V; k++) acc[k] += v[k];
  }
}

// One element through L2 (.cg), as the 16-byte loads: a peer's half must never come from a stale L1 line.
template <typename A> __device__ __forceinline__ A ldcg_elem(const A *p) {
  if constexpr (sizeof(A) == 4) {
    const float v = __ldcg(reinterpret_cast<const float *>(p));
    return *reinterpret_cast<const A *>(&v);
  } else {
    const unsigned short v = __ldcg(reinterpret_cast<const unsigned short *>(p));
    return *reinterpret_cast<const A *>(&v);
  }
}

// Writes m ≤ V values of a chunk to out + i: one 16-byte store when whole and aligned.
template <typename A> __device__ __forceinline__ void store_chunk(A *out, int i, int m, bool out16, const float *acc) {
  if (out16 && m == Vec16<A>::N) store16<A>(out + i, acc);
  else
#pragma unroll
    for (int k = 0; k < Vec16<A>::N; k++) // unrolled: acc stays in registers
      if (k < m) out[i + k] = from_f32<A>(acc[k]);
}

// acc (a chunk's f32 sum) ← A-rounded sum + residual[i, i + m), as the add kernel after an all-reduce would.
template <typename A> __device__ __forceinline__ void add_residual(float *acc, const A *residual, int i, int m) {
  constexpr int V = Vec16<A>::N;
  float r[V];
  if (m == V && (reinterpret_cast<unsigned long long>(residual + i) & 15) == 0) widen16<A>(*reinterpret_cast<const uint4 *>(residual + i), r);
  else
#pragma unroll
    for (int k = 0; k < V; k++) r[k] = k < m ? to_f32(residual[i + k]) : 0.f; // unrolled: r stays in registers
#pragma unroll
  for (int k = 0; k < V; k++) acc[k] = to_f32(from_f32<A>(acc[k])) + r[k];
}

// The block's epoch (advanced once per call), after the kernels before it on the stream have finished.
__device__ __forceinline__ u32 next_epoch(PeerSignals *own) {
  __shared__ u32 epoch_s;
  grid_dep_wait(); // x is written, and every earlier call on this stream has finished
  if (threadIdx.x == 0) epoch_s = (own->epoch[blockIdx.x] += 1u);
  __syncthreads();
  return epoch_s;
}

// Stages this block's chunks of x into this rank's half.
template <typename A> __device__ __forceinline__ void stage(A *mine, const A *x, int n) {
  constexpr int V = Vec16<A>::N;
  const int chunks = (n + V - 1) / V;
  const bool x16 = (reinterpret_cast<unsigned long long>(x) & 15) == 0;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
    const int i = c * V;
    if (x16 && i + V <= n) *reinterpret_cast<uint4 *>(mine + i) = *reinterpret_cast<const uint4 *>(x + i);
    else
      for (int k = i; k < n && k < i + V; k++) mine[k] = x[k];
  }
}

template <typename A>
__device__ void peer_all_reduce(A *out, const A *x, const unsigned long long *table, int n, int rank, int ranks, int half_bytes, const A *residual) {
  constexpr int V = Vec16<A>::N;
  // The next kernel may start now: its blocks take the SMs this one leaves free and load what they can
  // before their own grid_dep_wait (the next GEMV's weights) while the ranks meet here.
  grid_dep_launch();
  PeerSignals *own = reinterpret_cast<PeerSignals *>(table[rank]);
  const u32 epoch = next_epoch(own);
  stage<A>(data_half<A>(table[rank], epoch, half_bytes), x, n);
  peer_barrier(table, own, rank, ranks, epoch);
  const bool out16 = (reinterpret_cast<unsigned long long>(out) & 15) == 0;
  const int chunks = (n + V - 1) / V;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
    float acc[V];
    sum_chunk<A>(acc, table, ranks, epoch, half_bytes, c * V);
    const int m = min(V, n - c * V);
    if (residual) add_residual<A>(acc, residual, c * V, m);
    store_chunk<A>(out, c * V, m, out16, acc);
  }
}

template <typename A>
__device__ void peer_all_reduce_2s(A *out, const A *x, const unsigned long long *table, int n, int rank, int ranks, int half_bytes, const A *residual) {
  constexpr int V = Vec16<A>::N;
  grid_dep_launch(); // as in the one-shot kernel
  PeerSignals *own = reinterpret_cast<PeerSignals *>(table[rank]);
  const u32 epoch = next_epoch(own);
  A *mine = data_half<A>(table[rank], epoch, half_bytes);
  stage<A>(mine, x, n);
  peer_barrier(table, own, rank, ranks, epoch);
  const int chunks = (n + V - 1) / V;
  const int stride = gridDim.x * blockDim.x;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    if (c % ranks != rank) continue;
    float acc[V];
    sum_chunk<A>(acc, table, ranks, epoch, half_bytes, c * V);
    store16<A>(mine + c * V, acc); // the whole chunk: the half has room past n
  }
  peer_barrier(table, own, rank, ranks, epoch, true);
  const bool out16 = (reinterpret_cast<unsigned long long>(out) & 15) == 0;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    const A *src = data_half<A>(table[c % ranks], epoch, half_bytes) + c * V;
    const int m = min(V, n - c * V);
    if (residual) { // the owner's rounded sum (whole chunk: the half has room past n) + the residual
      float acc[V];
      widen16<A>(__ldcg(reinterpret_cast<const uint4 *>(src)), acc);
      add_residual<A>(acc, residual, c * V, m);
      store_chunk<A>(out, c * V, m, out16, acc);
    } else if (out16 && m == V) *reinterpret_cast<uint4 *>(out + c * V) = __ldcg(reinterpret_cast<const uint4 *>(src));
    else
      for (int k = 0; k < m; k++) out[c * V + k] = ldcg_elem<A>(src + k); // element loads: no local array
  }
}

template <typename A>
__device__ void peer_all_reduce_ll(A *out, const A *x, const unsigned long long *table, int n, int rank, int ranks, int half_bytes,
                                   int slot_bytes, const A *residual) {
  constexpr int V = Vec16<A>::N;
  __shared__ u32 epoch_s, prev_s;
  grid_dep_launch(); // as in the one-shot kernel
  PeerSignals *own = reinterpret_cast<PeerSignals *>(table[rank]);
  grid_dep_wait(); // x is written, and this rank's previous Lamport call has ended
  if (threadIdx.x == 0) {
    epoch_s = (own->llEpoch[blockIdx.x] += 1u);
    prev_s = own->llCount[blockIdx.x];
    own->llCount[blockIdx.x] = (u32)n;
  }
  __syncthreads();
  const u32 g = epoch_s % 3u;
  const int chunks = (n + V - 1) / V, stride = gridDim.x * blockDim.x;
  const bool x16 = (reinterpret_cast<unsigned long long>(x) & 15) == 0;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; x && c < chunks; c += stride) { // x null: the GEMV before pushed it (ll_push4)
    const int i = c * V, m = min(V, n - i);
    uint4 v;
    if (x16 && m == V) v = *reinterpret_cast<const uint4 *>(x + i);
    else v = ll_pack<A>(x + i, m);
    v = ll_clean<A>(v);
    for (int r = 0; r < ranks; r++) st_volatile16(ll_chunk<A>(table[r], half_bytes, slot_bytes, ranks, g, rank, i), v);
  }
  const bool out16 = (reinterpret_cast<unsigned long long>(out) & 15) == 0;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    const int i = c * V, m = min(V, n - i);
    float acc[V];
#pragma unroll
    for (int k = 0; k < V; k++) acc[k] = 0.f;
    for (int r = 0; r < ranks; r++) {
      const A *src = ll_chunk<A>(table[rank], half_bytes, slot_bytes, ranks, g, r, i);
      uint4 v;
      do v = ld_volatile16(src);
      while (!ll_arrived<A>(v));
      float f[V];
      widen16<A>(v, f);
#pragma unroll
      for (int k = 0; k < V; k++) acc[k] += f[k];
    }
    if (residual) add_residual<A>(acc, residual, i, m);
    store_chunk<A>(out, i, m, out16, acc);
  }
  // Back to the sentinel: what call e - 1 filled (this block's chunks of its size, every slot).
  const u32 old = (epoch_s + 2u) % 3u;
  const uint4 empty = make_uint4(LL_SENTINEL, LL_SENTINEL, LL_SENTINEL, LL_SENTINEL);
  const int prevChunks = ((int)prev_s + V - 1) / V;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < prevChunks; c += stride)
    for (int r = 0; r < ranks; r++) *reinterpret_cast<uint4 *>(ll_chunk<A>(table[rank], half_bytes, slot_bytes, ranks, old, r, c * V)) = empty;
}

#define PEER_ALL_REDUCE_ENTRY(S, A)                                                                                      \
  /* out [n] = Σ over ranks of x [n] (+ residual [n] unless null), through every rank's registered area listed */      \
  /* in table [ranks]. */                                                                                                \
  extern "C" __global__ void __launch_bounds__(512) peer_all_reduce_##S(A *out, const A *x, const unsigned long long *table, \
                                                                        int n, int rank, int ranks, int half_bytes,      \
                                                                        const A *residual) {                             \
    peer_all_reduce<A>(out, x, table, n, rank, ranks, half_bytes, residual);                                            \
  }                                                                                                                      \
  /* The same sums, two-shot: each rank reduces 1/ranks of the chunks, then every rank gathers them. */                 \
  extern "C" __global__ void __launch_bounds__(512) peer_all_reduce_2s_##S(A *out, const A *x, const unsigned long long *table, \
                                                                           int n, int rank, int ranks, int half_bytes,   \
                                                                           const A *residual) {                          \
    peer_all_reduce_2s<A>(out, x, table, n, rank, ranks, half_bytes, residual);                                         \
  }                                                                                                                      \
  /* The same sums, Lamport-style (no barrier): slot_bytes per slot of the region after the two halves. */              \
  extern "C" __global__ void __launch_bounds__(512, 1) peer_all_reduce_ll_##S(A *out, const A *x, const unsigned long long *table, \
                                                                           int n, int rank, int ranks, int half_bytes,   \
                                                                           int slot_bytes, const A *residual) {          \
    peer_all_reduce_ll<A>(out, x, table, n, rank, ranks, half_bytes, slot_bytes, residual);                             \
  }

PEER_ALL_REDUCE_ENTRY(f32, float)
PEER_ALL_REDUCE_ENTRY(f16, f16_t)
PEER_ALL_REDUCE_ENTRY(bf16, bf16_t)
