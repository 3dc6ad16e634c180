// Thread-block clusters (sm_90): the blocks of one cluster run at the same time on one GPC, can wait for
// each other (a hardware barrier) and read each other's shared memory. A kernel that splits one piece of
// work (a row of logits) over the blocks of a cluster reads the cluster's size at run time, so the host
// picks it per launch (CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION); a launch without the attribute is a cluster
// of one block. Before sm_90 every block is its own cluster: size 1, rank 0, the barrier is __syncthreads.
#pragma once
#include "common.cuh"

__device__ __forceinline__ int cluster_blocks() {
#if __CUDA_ARCH__ >= 900
  u32 n;
  asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
  return (int)n;
#else
  return 1;
#endif
}

__device__ __forceinline__ int cluster_rank() {
#if __CUDA_ARCH__ >= 900
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return (int)r;
#else
  return 0;
#endif
}

// Every thread of every block of the cluster arrives before any goes on; shared-memory writes before it
// are seen by reads after it in any block of the cluster (arrive has release and wait acquire semantics by
// default: PTX 7.8, NVRTC 11.8, takes no explicit .release / .acquire). All threads must call it: a block
// must also call it before it exits while others may still read its shared memory.
__device__ __forceinline__ void cluster_sync() {
#if __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
#else
  __syncthreads();
#endif
}

// The value at `p` (a variable in this block's shared memory) as block `rank` of the cluster holds it. Read
// it after a cluster_sync() (whose memory clobber keeps the compiler from reusing an earlier read).
template <typename T> __device__ __forceinline__ T cluster_read(const T *p, int rank) {
#if __CUDA_ARCH__ >= 900
  unsigned long long a;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(a) : "l"(p), "r"(rank));
  return *reinterpret_cast<const T *>(a);
#else
  return *p;
#endif
}

// `p` (a variable in this block's shared memory) as block `rank` of the cluster holds it: a generic pointer
// whose stores land in that block's shared memory (seen by its reads after the next cluster_sync()).
template <typename T> __device__ __forceinline__ T *cluster_map(T *p, int rank) {
#if __CUDA_ARCH__ >= 900
  unsigned long long a;
  asm volatile("mapa.u64 %0, %1, %2;" : "=l"(a) : "l"(p), "r"(rank));
  return reinterpret_cast<T *>(a);
#else
  return p;
#endif
}

// The sum over the cluster's blocks of the value at `p`, added in block order (every block gets the same
// bits). The reads are issued together (at most 8 blocks, the portable cluster limit): one after another,
// each waited ~200 cycles for the other SM.
__device__ __forceinline__ double cluster_sum_f64(const double *p, int blocks) {
  double v[8];
#pragma unroll
  for (int k = 0; k < 8; k++) v[k] = k < blocks ? cluster_read(p, k) : 0.0;
  double s = v[0];
#pragma unroll
  for (int k = 1; k < 8; k++)
    if (k < blocks) s += v[k];
  return s;
}
