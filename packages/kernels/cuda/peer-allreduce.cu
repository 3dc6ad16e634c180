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
// communicator) and grid_dep_wait() comes first. Chunks are assigned to blocks from the element count
// alone, so a block's chunks are the same on every rank whatever the alignment of x and out.
#include "common.cuh"

#define PEER_MAX_RANKS 8
#define PEER_MAX_BLOCKS 64
// Bytes before data half 0 (the host allocates the area with the same layout: peer-allreduce.ts).
#define PEER_SIGNAL_BYTES 4096

struct PeerSignals {
  u32 flags[PEER_MAX_BLOCKS][PEER_MAX_RANKS];
  u32 epoch[PEER_MAX_BLOCKS];
};

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
__device__ __forceinline__ void peer_barrier(const unsigned long long *table, PeerSignals *own, int rank, int ranks, u32 epoch) {
  __syncthreads(); // every thread's staging is done before the flag releases it
  if ((int)threadIdx.x < ranks) {
    PeerSignals *peer = reinterpret_cast<PeerSignals *>(table[threadIdx.x]);
    st_release_sys(&peer->flags[blockIdx.x][rank], epoch);
    while ((int)(ld_acquire_sys(&own->flags[blockIdx.x][threadIdx.x]) - epoch) < 0) {
    }
  }
  __syncthreads();
}

template <typename A> __device__ __forceinline__ A *data_half(unsigned long long area, u32 epoch, int half_bytes) {
  return reinterpret_cast<A *>(area + PEER_SIGNAL_BYTES + (unsigned long long)(epoch & 1u) * half_bytes);
}

template <typename A>
__device__ void peer_all_reduce(A *out, const A *x, const unsigned long long *table, int n, int rank, int ranks, int half_bytes) {
  constexpr int V = Vec16<A>::N;
  __shared__ u32 epoch_s;
  grid_dep_wait(); // x is written, and every earlier call on this stream has finished
  PeerSignals *own = reinterpret_cast<PeerSignals *>(table[rank]);
  if (threadIdx.x == 0) epoch_s = (own->epoch[blockIdx.x] += 1u);
  __syncthreads();
  const u32 epoch = epoch_s;
  A *mine = data_half<A>(table[rank], epoch, half_bytes);
  const int chunks = (n + V - 1) / V;
  const int stride = gridDim.x * blockDim.x;
  const bool x16 = (reinterpret_cast<unsigned long long>(x) & 15) == 0;
  const bool out16 = (reinterpret_cast<unsigned long long>(out) & 15) == 0;
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    const int i = c * V;
    if (x16 && i + V <= n) *reinterpret_cast<uint4 *>(mine + i) = *reinterpret_cast<const uint4 *>(x + i);
    else
      for (int k = i; k < n && k < i + V; k++) mine[k] = x[k];
  }
  peer_barrier(table, own, rank, ranks, epoch);
  grid_dep_launch();
  for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += stride) {
    const int i = c * V;
    const int m = min(V, n - i);
    float acc[V];
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
    if (out16 && m == V) store16<A>(out + i, acc);
    else
      for (int k = 0; k < m; k++) out[i + k] = from_f32<A>(acc[k]);
  }
}

#define PEER_ALL_REDUCE_ENTRY(S, A)                                                                                      \
  /* out [n] = Σ over ranks of x [n], through every rank's registered area listed in table [ranks]. */                \
  extern "C" __global__ void __launch_bounds__(512) peer_all_reduce_##S(A *out, const A *x, const unsigned long long *table, \
                                                                        int n, int rank, int ranks, int half_bytes) {    \
    peer_all_reduce<A>(out, x, table, n, rank, ranks, half_bytes);                                                      \
  }

PEER_ALL_REDUCE_ENTRY(f32, float)
PEER_ALL_REDUCE_ENTRY(f16, f16_t)
PEER_ALL_REDUCE_ENTRY(bf16, bf16_t)
