// The peer all-reduce's registered area (peer-allreduce.cu, src/cuda/peer-allreduce.ts) and the pieces of its
// Lamport protocol that a kernel computing the reduced value can use itself (gemv.cu pushes its output).
#pragma once
#include "common.cuh"

#define PEER_MAX_RANKS 8
#define PEER_MAX_BLOCKS 64
// Bytes before data half 0 (the host allocates the area with the same layout: peer-allreduce.ts).
#define PEER_SIGNAL_BYTES 8192

struct PeerSignals {
  u32 flags[PEER_MAX_BLOCKS][PEER_MAX_RANKS];
  u32 flags2[PEER_MAX_BLOCKS][PEER_MAX_RANKS];
  u32 epoch[PEER_MAX_BLOCKS];
  u32 llEpoch[PEER_MAX_BLOCKS]; // the Lamport kernel's calls (its own count: the kernels may alternate)
  u32 llCount[PEER_MAX_BLOCKS]; // elements of the block's previous Lamport call
};
static_assert(sizeof(PeerSignals) <= PEER_SIGNAL_BYTES, "the signals fit before the data halves");
#define LL_SENTINEL 0x80008000u

// A 16-byte chunk holds no sentinel element (it has arrived whole).
template <typename A> __device__ __forceinline__ bool ll_arrived(const uint4 v) {
  const u32 w[4] = {v.x, v.y, v.z, v.w};
  bool ok = true;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    if constexpr (sizeof(A) == 4) ok &= w[i] != LL_SENTINEL;
    else ok &= (w[i] & 0xffffu) != 0x8000u && (w[i] >> 16) != 0x8000u;
  }
  return ok;
}

// A word as pushed: sentinel elements replaced by the nearest value that is not one.
template <typename A> __device__ __forceinline__ u32 ll_clean_word(u32 w) {
  if constexpr (sizeof(A) == 4) return w == LL_SENTINEL ? 0x80000000u : w;
  const u32 lo = w & 0xffffu, hi = w >> 16;
  return (lo == 0x8000u ? 0u : lo) | ((hi == 0x8000u ? 0u : hi) << 16);
}
template <typename A> __device__ __forceinline__ uint4 ll_clean(const uint4 v) {
  return make_uint4(ll_clean_word<A>(v.x), ll_clean_word<A>(v.y), ll_clean_word<A>(v.z), ll_clean_word<A>(v.w));
}

// m < V elements at p (any alignment) as one chunk; the padding is +0, never the sentinel.
template <typename A> __device__ __forceinline__ uint4 ll_pack(const A *p, int m) {
  u32 w[4] = {0u, 0u, 0u, 0u};
  if constexpr (sizeof(A) == 4) {
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = k < m ? __float_as_uint(p[k]) : 0u;
  } else {
#pragma unroll
    for (int k = 0; k < 8; k++) w[k / 2] |= (k < m ? (u32)p[k].bits : 0u) << (16 * (k & 1));
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void st_volatile16(void *p, const uint4 v) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
__device__ __forceinline__ uint4 ld_volatile16(const void *p) {
  uint4 v;
  // No "memory" clobber: the sums use the loaded values themselves, and volatile asm keeps its order.
  asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}

// Chunk i (element index) of slot s of generation g of the Lamport region of an area.
template <typename A>
__device__ __forceinline__ A *ll_chunk(unsigned long long area, int half_bytes, int slot_bytes, int ranks, u32 g, int s, int i) {
  return reinterpret_cast<A *>(area + PEER_SIGNAL_BYTES + 2ull * half_bytes + ((unsigned long long)g * ranks + s) * slot_bytes) + i;
}

// The push half of a Lamport all-reduce, from inside the kernel that computes x (a row-parallel GEMV's
// epilogue, gemv.cu): 4 values of x at element i (A-rounded, as the GEMV would store them) go straight into
// slot `rank` of every rank's area, where peer_all_reduce_ll, launched after it without x, finds them. The
// generation is the one that launch will use: its blocks' epochs all advance once a call (every launch has
// the same grid), so block 0's count + 1. i is a multiple of 4 (the host pushes only rows of whole groups of
// 4), so the store is one aligned 8-byte (16-bit types) or 16-byte (f32) vector.
struct LLPush {
  const unsigned long long *table; // every rank's area
  int rank, ranks, half_bytes, slot_bytes;
};
template <typename A> __device__ __forceinline__ void ll_push4(const LLPush &p, const float (&v)[4], int i) {
  const PeerSignals *own = reinterpret_cast<const PeerSignals *>(p.table[p.rank]);
  u32 e;
  asm volatile("ld.volatile.global.u32 %0, [%1];" : "=r"(e) : "l"(&own->llEpoch[0]));
  const u32 g = (e + 1u) % 3u;
  if constexpr (sizeof(A) == 4) {
    const uint4 w = make_uint4(ll_clean_word<A>(__float_as_uint(v[0])), ll_clean_word<A>(__float_as_uint(v[1])), ll_clean_word<A>(__float_as_uint(v[2])),
                               ll_clean_word<A>(__float_as_uint(v[3])));
    for (int r = 0; r < p.ranks; r++) st_volatile16(ll_chunk<A>(p.table[r], p.half_bytes, p.slot_bytes, p.ranks, g, p.rank, i), w);
  } else {
    const u32 w0 = ll_clean_word<A>((u32)from_f32<A>(v[0]).bits | ((u32)from_f32<A>(v[1]).bits << 16));
    const u32 w1 = ll_clean_word<A>((u32)from_f32<A>(v[2]).bits | ((u32)from_f32<A>(v[3]).bits << 16));
    for (int r = 0; r < p.ranks; r++)
      asm volatile("st.volatile.global.v2.u32 [%0], {%1, %2};" ::"l"(ll_chunk<A>(p.table[r], p.half_bytes, p.slot_bytes, p.ranks, g, p.rank, i)), "r"(w0), "r"(w1)
                   : "memory");
  }
}
