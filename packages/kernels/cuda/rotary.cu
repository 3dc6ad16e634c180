// Rotary position embedding of each head, both pairings (rotate-half and GPT-J interleaved), partial
// rotary (dims ≥ rotaryDim pass through) and a scaling of cos and sin; and the fused form DeepSpeed calls
// "bias + rotary + KV-cache write": q rotated into its buffer, k rotated and v copied straight into the
// paged cache (the bias is already in the q/k/v GEMV's epilogue).
// (rotate_dim, rope_table and CachePut live in rope.cuh, shared with the decode attention).
#include "rope.cuh"

// y, x [rows, heads*headDim]; positions [rows]; invFreq [rotaryDim/2] in f64. grid (rows), block (multiple of 32).
template <typename A>
__device__ void rotary(A *y, const A *x, const int *positions, const double *invFreq, int heads, int headDim, int rotaryDim, int interleaved,
                       float scaling) {
  __shared__ double cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
  grid_dep_wait();
  grid_dep_launch();
  const int r = blockIdx.x;
  rope_table(cs, sn, (double)positions[r], invFreq, rotaryDim, scaling);
  const i64 base = (i64)r * heads * headDim;
  for (int e = threadIdx.x; e < heads * headDim; e += blockDim.x) {
    const int h = e / headDim, t = e - h * headDim;
    y[base + e] = from_f32<A>(rotate_dim(x + base + (i64)h * headDim, t, rotaryDim, interleaved, cs, sn));
  }
}

// q, qOut [rows, heads*headDim]; k, v [rows, kvHeads*headDim]; kCache, vCache [slots, kvHeads*headDim]
// (the activation type, or e4m3 for the fp8 cache); slots, positions [rows]. Block (x, r) takes heads x, x +
// gridDim.x, ... of row r: the q head, and for heads below kvHeads the k head (rotated into the cache)
// and the v head (copied there). A decode step launches a block per head, so a single row still fills
// the GPU; a prompt step one block per row, which forms the row's cos/sin table once.
// grid (1 or heads, rows), block (multiple of 32).
// C: the cache's element type (A, or e4m3_t for the fp8 cache).
template <typename A, typename C>
__device__ void rope_kv(A *qOut, C *kCache, C *vCache, const A *q, const A *k, const A *v, const int *positions, const int *slots,
                        const double *invFreq, int heads, int kvHeads, int headDim, int rotaryDim, int interleaved, float scaling) {
  __shared__ double cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
  grid_dep_wait();
  grid_dep_launch();
  const int r = blockIdx.y;
  rope_table(cs, sn, (double)positions[r], invFreq, rotaryDim, scaling);
  const i64 row = (i64)slots[r] * kvHeads * headDim;
  for (int h = blockIdx.x; h < heads; h += gridDim.x) {
    const i64 qh = ((i64)r * heads + h) * headDim;
    for (int t = threadIdx.x; t < headDim; t += blockDim.x) qOut[qh + t] = from_f32<A>(rotate_dim(q + qh, t, rotaryDim, interleaved, cs, sn));
    if (h >= kvHeads) continue;
    const i64 kvh = ((i64)r * kvHeads + h) * headDim;
    const i64 dst = row + (i64)h * headDim;
    for (int t = threadIdx.x; t < headDim; t += blockDim.x) {
      kCache[dst + t] = CachePut<C, A>::round(rotate_dim(k + kvh, t, rotaryDim, interleaved, cs, sn));
      vCache[dst + t] = CachePut<C, A>::copy(v[kvh + t]);
    }
  }
}

// kCache, vCache [slots, kvWidth]; k, v [rows, kvWidth]; slots [rows]: the step's k and v rows into the
// cache, for models without rotary. grid (rows), block (multiple of 32).
template <typename A, typename C> __device__ void kv_write(C *kCache, C *vCache, const A *k, const A *v, const int *slots, int kvWidth) {
  grid_dep_wait();
  grid_dep_launch();
  const int r = blockIdx.x;
  const i64 dst = (i64)slots[r] * kvWidth, src = (i64)r * kvWidth;
  for (int j = threadIdx.x; j < kvWidth; j += blockDim.x) {
    kCache[dst + j] = CachePut<C, A>::copy(k[src + j]);
    vCache[dst + j] = CachePut<C, A>::copy(v[src + j]);
  }
}

#define ROTARY_ENTRIES(S, A)                                                                                                        \
  extern "C" __global__ void rotary_##S(A *y, const A *x, const int *positions, const double *invFreq, int heads, int headDim,      \
                                        int rotaryDim, int interleaved, float scaling) {                                            \
    rotary<A>(y, x, positions, invFreq, heads, headDim, rotaryDim, interleaved, scaling);                                           \
  }                                                                                                                                 \
  extern "C" __global__ void rope_kv_##S(A *qOut, A *kCache, A *vCache, const A *q, const A *k, const A *v, const int *positions,   \
                                         const int *slots, const double *invFreq, int heads, int kvHeads, int headDim, int rotaryDim, \
                                         int interleaved, float scaling) {                                                          \
    rope_kv<A, A>(qOut, kCache, vCache, q, k, v, positions, slots, invFreq, heads, kvHeads, headDim, rotaryDim, interleaved, scaling); \
  }                                                                                                                                 \
  extern "C" __global__ void kv_write_##S(A *kCache, A *vCache, const A *k, const A *v, const int *slots, int kvWidth) {           \
    kv_write<A, A>(kCache, vCache, k, v, slots, kvWidth);                                                                           \
  }

// The same writes into the opt-in fp8 (e4m3) cache: rope_kv_f16_e4m3, kv_write_f16_e4m3.
#define KV8_ENTRIES(S, A)                                                                                                           \
  extern "C" __global__ void rope_kv_##S##_e4m3(A *qOut, e4m3_t *kCache, e4m3_t *vCache, const A *q, const A *k, const A *v,        \
                                                const int *positions, const int *slots, const double *invFreq, int heads,           \
                                                int kvHeads, int headDim, int rotaryDim, int interleaved, float scaling) {          \
    rope_kv<A, e4m3_t>(qOut, kCache, vCache, q, k, v, positions, slots, invFreq, heads, kvHeads, headDim, rotaryDim, interleaved, scaling); \
  }                                                                                                                                 \
  extern "C" __global__ void kv_write_##S##_e4m3(e4m3_t *kCache, e4m3_t *vCache, const A *k, const A *v, const int *slots,         \
                                                 int kvWidth) {                                                                     \
    kv_write<A, e4m3_t>(kCache, vCache, k, v, slots, kvWidth);                                                                      \
  }

ROTARY_ENTRIES(f32, float)
ROTARY_ENTRIES(f16, f16_t)
ROTARY_ENTRIES(bf16, bf16_t)
KV8_ENTRIES(f32, float)
KV8_ENTRIES(f16, f16_t)
KV8_ENTRIES(bf16, bf16_t)
