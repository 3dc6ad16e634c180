// Kernels for measuring the card, not for models: a read-only stream over a large buffer, the device's
// read bandwidth (the decode roofline divides weight bytes by it).
#include "common.cuh"

#define READ_THREADS 256
#define READ_UNROLL 8

// Reads n16 (< 2^31) 16-byte words at src (grid-stride, READ_UNROLL loads in flight a thread) and writes one word a
// block to sink, so nothing is optimised away. grid (any), block (READ_THREADS).
extern "C" __global__ void __launch_bounds__(READ_THREADS) read_bandwidth(u32 *sink, const uint4 *src, int n16) {
  const i64 stride = (i64)gridDim.x * READ_THREADS;
  u32 acc = 0;
  i64 i = (i64)blockIdx.x * READ_THREADS + threadIdx.x;
  for (; i + (READ_UNROLL - 1) * stride < n16; i += READ_UNROLL * stride) {
    uint4 v[READ_UNROLL];
#pragma unroll
    for (int u = 0; u < READ_UNROLL; u++) v[u] = ld_stream16(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < READ_UNROLL; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 v = ld_stream16(src + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  acc = __reduce_xor_sync(0xffffffffu, acc);
  if ((threadIdx.x & 31) == 0) atomicXor(sink + blockIdx.x, acc);
}
