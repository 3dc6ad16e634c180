// Greedy argmax over rows of f32 logits on the GPU, so only token ids cross PCIe. The pick is the host
// sampler's (core's Sampler at temperature 0): NaN counts as -Infinity and the lowest id wins a tie, so a
// row with nothing above -Infinity gives 0 (its lowest id holds the maximum, -Infinity).
//
// A row is split over blocks of ARGMAX_CHUNK logits (GPT-2's 50,257 over 25 blocks): one block a row made
// this a 196-load serial walk (~25 µs, as long as five layers of GPT-2). Each block reduces its chunk and
// publishes (value, id); the last block of the row to finish (a counter, as in threadFenceReduction)
// reduces the partials, writes the id and leaves the counter at zero for the next launch.
//
// feed (or null): a chained decode's next step (CudaProgram.runArgmaxSteps) also gets the ids there, as its
// token ids, so the steps follow each other without the host.
#include "common.cuh"

#define ARGMAX_THREADS 256
#define ARGMAX_ITEMS 8 // logits a thread loads at once, ARGMAX_THREADS apart (coalesced)
#define ARGMAX_CHUNK (ARGMAX_THREADS * ARGMAX_ITEMS)

// (v, i) beats (bv, bi): higher value, or the same value and a lower id. Values are NaN-free here.
__device__ __forceinline__ bool argmax_better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// The best (value, id) of the block's candidates, in thread 0.
__device__ __forceinline__ void argmax_block(float &best, int &bi) {
  __shared__ float sv[ARGMAX_THREADS / 32];
  __shared__ int si[ARGMAX_THREADS / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (argmax_better(ov, oi, best, bi)) {
      best = ov;
      bi = oi;
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < ARGMAX_THREADS / 32; w++)
      if (argmax_better(sv[w], si[w], best, bi)) {
        best = sv[w];
        bi = si[w];
      }
  }
  __syncthreads(); // sv/si may be reused by a second reduction in the same block
}

// out [rows]: the pick of each row of logits [rows, width]. pv, pi [rows, gridDim.y]: the blocks' partials;
// counters [rows]: zero before the first launch, left zero. grid (rows, ceil(width / ARGMAX_CHUNK)): rows on
// x, which takes up to 2³¹ − 1 (y stops at 65,535), block (ARGMAX_THREADS).
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS) argmax_f32(int *out, int *feed, const float *logits, int width, float *pv, int *pi, int *counters) {
  __shared__ bool last;
  grid_dep_wait();
  grid_dep_launch();
  const int r = blockIdx.x, b = blockIdx.y, blocks = gridDim.y;
  const float *row = logits + (i64)r * width;
  const int base = b * ARGMAX_CHUNK + threadIdx.x;
  float v[ARGMAX_ITEMS];
#pragma unroll
  for (int k = 0; k < ARGMAX_ITEMS; k++) { // every load issued before any is compared
    const int j = base + k * ARGMAX_THREADS;
    v[k] = j < width ? __ldcs(row + j) : NEG_INF;
  }
  float best = NEG_INF;
  int bi = 0x7fffffff; // beaten by any real id: every value here is ≥ -Infinity
#pragma unroll
  for (int k = 0; k < ARGMAX_ITEMS; k++) {
    const int j = base + k * ARGMAX_THREADS;
    const float x = v[k] != v[k] ? NEG_INF : v[k];
    if (j < width && argmax_better(x, j, best, bi)) {
      best = x;
      bi = j;
    }
  }
  argmax_block(best, bi);
  if (blocks == 1) {
    if (threadIdx.x == 0) {
      out[r] = bi;
      if (feed) feed[r] = bi;
    }
    return;
  }
  if (threadIdx.x == 0) {
    pv[(i64)r * blocks + b] = best;
    pi[(i64)r * blocks + b] = bi;
    __threadfence(); // the partial is visible before the count says so
    last = atomicAdd(&counters[r], 1) == blocks - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  best = NEG_INF;
  bi = 0x7fffffff;
  for (int c = threadIdx.x; c < blocks; c += ARGMAX_THREADS) {
    const float x = __ldcg(pv + (i64)r * blocks + c);
    const int i = __ldcg(pi + (i64)r * blocks + c);
    if (argmax_better(x, i, best, bi)) {
      best = x;
      bi = i;
    }
  }
  argmax_block(best, bi);
  if (threadIdx.x == 0) {
    out[r] = bi;
    if (feed) feed[r] = bi;
    counters[r] = 0; // ready for the next launch
  }
}
