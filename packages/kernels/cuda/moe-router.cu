// Mixture-of-Experts routing: router logits, softmax, top-k with ties to the lower id, optional
// renormalization, and per-expert token counts (Program.expertLoad): one block a row (moe_router), or for
// decode steps a block per row and expert (moe_router_split, below). The routing it writes is f32 in every
// mode: [rows, 2·topK], ids as floats, then weights.
#include "moe.cuh"
// Router: one block (256 threads) per row. Logits in f32 (a warp an expert), softmax in double as the
// reference does (then rounded to f32, as transformers' f32 softmax), top-k by warp argmax with ties to the
// lower id. counts (per expert, u64) gets one per selected expert of every real row: padded rows of a
// decode graph carry slot padSlot and are skipped (slots null: every row counts).
// The router reads little (experts × hidden weights) but sits between two kernels on the decode path, so
// its latency is what counts: a warp loads its first expert's weights (up to ROUTER_PRE 16-byte vectors a
// lane) before griddepcontrol.wait, while the kernel before it finishes, and the dot products run over
// 16-byte vectors (scalar loads when the rows are not whole vectors).
#define ROUTER_PRE 16

// Σ w[v·N + k]·x[v·N + k] over the 16-byte vectors v of a lane, one vector (raw) at a time.
template <typename W, typename A> __device__ __forceinline__ float router_vec(const uint4 raw, const A *x, int v) {
  constexpr int N = Vec16<W>::N;
  float wf[N], xv[N];
  widen16<W>(raw, wf);
  load_act<A, N>(x + (i64)v * N, xv);
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < N; k++) s += wf[k] * xv[k];
  return s;
}

// Σ w[v·N + k]·xs[v·N + k] for a normalized row in shared memory (f32).
template <typename W> __device__ __forceinline__ float router_vec_shared(const uint4 raw, const float *xs, int v) {
  constexpr int N = Vec16<W>::N;
  float wf[N];
  widen16<W>(raw, wf);
  float xv[N];
#pragma unroll
  for (int k = 0; k < N; k += 4) { // 16-byte shared loads: 2-way bank conflicts, not the 8-way of single floats
    const float4 q = *reinterpret_cast<const float4 *>(xs + v * N + k);
    xv[k] = q.x, xv[k + 1] = q.y, xv[k + 2] = q.z, xv[k + 3] = q.w;
  }
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < N; k++) s += wf[k] * xv[k];
  return s;
}

// The fused RMSNorm of one row (rms_norm's arithmetic; its own order of the squares' sum): y = the row
// normalized and rounded, xs = the same values in f32 (shared memory). Rows of whole 16-byte vectors are
// read once, ROUTER_NORM_VECS vectors a thread in flight (the first 8,192 f16 elements at 256 threads),
// so the norm costs about one L2 round trip instead of a dependent load a few elements. The norm's
// weights for those vectors (g) are loaded before the wait (router_norm_weights): they never change, and
// loaded after the sum of squares they were a second round trip in the router's serial chain.
#define ROUTER_NORM_VECS 4
template <typename A> struct RouterNormWeights {
  float g[ROUTER_NORM_VECS][Vec16<A>::N];
};

// Whether the row's norm goes by whole 16-byte vectors (x, y and w aligned, hidden a multiple of a vector).
template <typename A> __device__ __forceinline__ bool router_norm_vec(const A *x, const A *y, const float *w, int hidden) {
  return hidden % Vec16<A>::N == 0 && ((reinterpret_cast<unsigned long long>(x) | reinterpret_cast<unsigned long long>(y) | reinterpret_cast<unsigned long long>(w)) & 15) == 0;
}

template <typename A> __device__ __forceinline__ void router_norm_weights(RouterNormWeights<A> &nw, const float *w, int nv) {
  constexpr int V = Vec16<A>::N;
#pragma unroll
  for (int j = 0; j < ROUTER_NORM_VECS; j++) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v < nv) load_weight<float, V>(w + (i64)v * V, nw.g[j]);
  }
}

template <typename A>
__device__ __forceinline__ void router_norm(float *xs, A *y, const A *x, const float *w, const RouterNormWeights<A> &nw, bool vec, int hidden, float eps, float *scratch) {
  constexpr int V = Vec16<A>::N;
  const int nv = vec ? hidden / V : 0;
  uint4 held[ROUTER_NORM_VECS];
  float sq = 0.f;
#pragma unroll
  for (int j = 0; j < ROUTER_NORM_VECS; j++) {
    const int v = threadIdx.x + j * blockDim.x;
    held[j] = v < nv ? *reinterpret_cast<const uint4 *>(x + (i64)v * V) : make_uint4(0u, 0u, 0u, 0u); // zeros add nothing
  }
#pragma unroll
  for (int j = 0; j < ROUTER_NORM_VECS; j++) {
    float f[V];
    widen16<A>(held[j], f);
#pragma unroll
    for (int k = 0; k < V; k++) sq += f[k] * f[k];
  }
  // Past the held vectors (wider rows), or every element of a row that is not whole vectors.
  for (int i = (vec ? ROUTER_NORM_VECS * (int)blockDim.x * V : 0) + threadIdx.x; i < hidden; i += blockDim.x) {
    const float v = to_f32(x[i]);
    sq += v * v;
  }
  const float inv = 1.f / sqrtf(block_sum(sq, scratch) / (float)hidden + eps);
#pragma unroll
  for (int j = 0; j < ROUTER_NORM_VECS; j++) {
    const int v = threadIdx.x + j * blockDim.x;
    if (v >= nv) continue;
    float f[V];
    widen16<A>(held[j], f);
#pragma unroll
    for (int k = 0; k < V; k++) {
      f[k] = to_f32(from_f32<A>(f[k] * inv * nw.g[j][k]));
      xs[v * V + k] = f[k];
    }
    store16<A>(y + (i64)v * V, f);
  }
  for (int i = (vec ? ROUTER_NORM_VECS * (int)blockDim.x * V : 0) + threadIdx.x; i < hidden; i += blockDim.x) {
    const A a = from_f32<A>(to_f32(x[i]) * inv * w[i]);
    y[i] = a;
    xs[i] = to_f32(a);
  }
  __syncthreads();
}

// Warp 0 of a router block, from the row's logits in prob[] (shared memory): the softmax in double as the
// reference does (then rounded to f32, as transformers' f32 softmax), the top-k with ties to the lower id,
// the row's routing at dst ([2·topK]: ids as floats, then weights) and, for a real row, the expert counts.
__device__ __forceinline__ void router_pick(float *prob, int experts, int topK, int normalize, float *dst, unsigned long long *counts, bool real) {
  __shared__ float chosen[MOE_MAX_TOPK];
  __shared__ int chosenId[MOE_MAX_TOPK];
  const int lane = threadIdx.x & 31;
  float m = NEG_INF;
  for (int e = lane; e < experts; e += 32) m = fmaxf(m, prob[e]);
  m = warp_max(m);
  // A lane's first exponential is kept for its probability (experts past 32 compute theirs again).
  double sum = 0.0, first = 0.0;
  for (int e = lane; e < experts; e += 32) {
    const double ex = exp((double)prob[e] - (double)m);
    if (e == lane) first = ex;
    sum += ex;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane < experts) prob[lane] = (float)(first / sum);
  for (int e = lane + 32; e < experts; e += 32) prob[e] = (float)(exp((double)prob[e] - (double)m) / sum);
  __syncwarp();
  TRACE_MARK(3);
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
    for (int k = 0; k < topK; k++) {
      dst[k] = (float)chosenId[k];
      dst[topK + k] = normalize ? (float)((double)chosen[k] / total) : chosen[k];
      if (counts && real) atomicAdd(counts + chosenId[k], 1ull);
    }
  }
}



// With norm_w (a fused RMSNorm): x is the norm's input; the block normalizes its row as rms_norm does,
// writes it to xn (the norm's output, for the experts) and keeps it in shared memory for the dot products.
template <typename W, typename A>
__device__ void moe_router(float *out, const W *w, const A *x, int hidden, int experts, int topK, int normalize,
                           unsigned long long *counts, const int *slots, int padSlot, A *xn, const float *norm_w, float eps) {
  extern __shared__ float smem[]; // prob [experts], then (fused norm) the normalized row [hidden]
  float *prob = smem, *xs = smem + ((experts + 3) & ~3); // xs 16-byte aligned: read as float4
  __shared__ float scratch[32];
  constexpr int N = Vec16<W>::N;
  const int r = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const A *xr = x + (i64)r * hidden;
  // Whole 16-byte vectors of weights and of x (x's rows start at multiples of hidden elements).
  const bool vec = hidden % N == 0 && (reinterpret_cast<unsigned long long>(w) & 15) == 0 &&
                   (reinterpret_cast<unsigned long long>(x) % (N * sizeof(A) < 16 ? N * sizeof(A) : 16)) == 0;
  const int nv = hidden / N;
  uint4 pre[ROUTER_PRE];
#pragma unroll
  for (int j = 0; j < ROUTER_PRE; j++) {
    const int v = lane + 32 * j;
    pre[j] = vec && warp < experts && v < nv ? ld_small16(w + (i64)warp * hidden + (i64)v * N) : make_uint4(0u, 0u, 0u, 0u);
  }
  A *yr = norm_w ? xn + (i64)r * hidden : nullptr;
  const bool normVec = norm_w && router_norm_vec<A>(xr, yr, norm_w, hidden);
  RouterNormWeights<A> nw;
  if (normVec) router_norm_weights<A>(nw, norm_w, hidden / Vec16<A>::N);
  grid_dep_wait();
  grid_dep_launch();
  if (norm_w) router_norm<A>(xs, yr, xr, norm_w, nw, normVec, hidden, eps, scratch);
  TRACE_MARK(1);
  for (int e = warp; e < experts; e += warps) {
    const W *we = w + (i64)e * hidden;
    float s = 0.f;
    if (vec) {
#pragma unroll
      for (int j = 0; j < ROUTER_PRE; j++) {
        const int v = lane + 32 * j;
        if (v >= nv) continue;
        const uint4 raw = e == warp ? pre[j] : ld_small16(we + (i64)v * N);
        s += norm_w ? router_vec_shared<W>(raw, xs, v) : router_vec<W, A>(raw, xr, v);
      }
      for (int v = lane + 32 * ROUTER_PRE; v < nv; v += 32) {
        const uint4 raw = ld_small16(we + (i64)v * N);
        s += norm_w ? router_vec_shared<W>(raw, xs, v) : router_vec<W, A>(raw, xr, v);
      }
    } else {
      for (int i = lane; i < hidden; i += 32) s += to_f32(we[i]) * (norm_w ? xs[i] : to_f32(xr[i]));
    }
    s = warp_sum(s);
    if (lane == 0) prob[e] = s;
  }
  __syncthreads();
  TRACE_MARK(2);
  if (warp != 0) return;
  router_pick(prob, experts, topK, normalize, out + (i64)r * 2 * topK, counts, slots == nullptr || slots[r] != padSlot);
  TRACE_MARK(4);
}

// Router, split: a block per (row, expert), for decode steps. At batch 1 the router is one row between two
// kernels of the decode path, and one block read all of its weights (64 KB for Mixtral) at one SM's share of
// a memory system that the GEMV before it keeps saturated: ~2.5 µs of a 9 µs router (PERF-NOTES, session
// 17). Here block (r, e) reads only expert e's row (before the wait, with the norm's weights), normalizes
// the whole row itself (the same threads hold the same vectors as moe_router's norm, so the same bits), and
// writes its logit; the last of the row's blocks to finish (a counter, as argmax_f32 does) picks the
// experts. Block (r, 0) writes the normalized row for the experts. Rows of whole 16-byte vectors of at most
// ROUTER_SPLIT_VECS · 256 · N elements, every pointer 16-byte aligned (routerSplits in src/cuda/moe-launch.ts).
#define ROUTER_SPLIT_VECS 4
template <typename W, typename A>
__device__ void moe_router_split(float *out, const W *w, const A *x, int hidden, int experts, int topK, int normalize,
                                 unsigned long long *counts, const int *slots, int padSlot, A *xn, const float *norm_w, float eps,
                                 float *logits, int *done) {
  __shared__ float scratch[32];
  __shared__ bool last;
  extern __shared__ float smem[]; // the row's logits [experts] in the last block
  constexpr int N = Vec16<W>::N, V = Vec16<A>::N;
  const int r = blockIdx.x, e = blockIdx.y;
  const A *xr = x + (i64)r * hidden;
  const W *we = w + (i64)e * hidden;
  const int nw = hidden / N, nx = hidden / V;
  // Before the wait: this expert's weights and the norm's weights (neither changes between steps).
  constexpr int WV = (ROUTER_SPLIT_VECS * V + N - 1) / N; // weight vectors a thread: the same elements as its x vectors
  uint4 wv[WV];
#pragma unroll
  for (int j = 0; j < WV; j++) {
    const int v = threadIdx.x + j * blockDim.x;
    wv[j] = v < nw ? ld_small16(we + (i64)v * N) : make_uint4(0u, 0u, 0u, 0u);
  }
  float g[ROUTER_SPLIT_VECS][V];
  if (norm_w) {
#pragma unroll
    for (int j = 0; j < ROUTER_SPLIT_VECS; j++) {
      const int v = threadIdx.x + j * blockDim.x;
      if (v < nx) load_weight<float, V>(norm_w + (i64)v * V, g[j]);
    }
  }
  grid_dep_wait();
  grid_dep_launch();
  uint4 held[ROUTER_SPLIT_VECS];
#pragma unroll
  for (int j = 0; j < ROUTER_SPLIT_VECS; j++) {
    const int v = threadIdx.x + j * blockDim.x;
    held[j] = v < nx ? *reinterpret_cast<const uint4 *>(xr + (i64)v * V) : make_uint4(0u, 0u, 0u, 0u);
  }
  // The row, normalized as moe_router's norm does (or as it is), in f32 registers: f[j] is vector j's.
  float f[ROUTER_SPLIT_VECS][V];
#pragma unroll
  for (int j = 0; j < ROUTER_SPLIT_VECS; j++) widen16<A>(held[j], f[j]);
  if (norm_w) {
    float sq = 0.f;
#pragma unroll
    for (int j = 0; j < ROUTER_SPLIT_VECS; j++)
#pragma unroll
      for (int k = 0; k < V; k++) sq += f[j][k] * f[j][k];
    const float inv = 1.f / sqrtf(block_sum(sq, scratch) / (float)hidden + eps);
#pragma unroll
    for (int j = 0; j < ROUTER_SPLIT_VECS; j++) {
      const int v = threadIdx.x + j * blockDim.x;
      if (v >= nx) continue; // past the row: f stays 0 (g was never loaded there)
#pragma unroll
      for (int k = 0; k < V; k++) f[j][k] = to_f32(from_f32<A>(f[j][k] * inv * g[j][k]));
      if (e == 0) store16<A>(xn + (i64)r * hidden + (i64)v * V, f[j]);
    }
  }
  // The dot product: element i of the row is f[j][k] with i = (threadIdx.x + j·256)·V + k; weight vector v
  // covers elements v·N .. v·N + N − 1, held by this thread when N == V (16-bit weights on 16-bit
  // activations, or f32 on f32), else by the threads whose x vectors overlap it (through shared memory).
  float s = 0.f;
  if constexpr (N == V) {
#pragma unroll
    for (int j = 0; j < ROUTER_SPLIT_VECS; j++) {
      float wf[N];
      widen16<W>(wv[j], wf);
#pragma unroll
      for (int k = 0; k < N; k++) s += wf[k] * f[j][k];
    }
  } else {
    float *row = smem + ((experts + 3) & ~3);
#pragma unroll
    for (int j = 0; j < ROUTER_SPLIT_VECS; j++) {
      const int v = threadIdx.x + j * blockDim.x;
      if (v < nx)
#pragma unroll
        for (int k = 0; k < V; k++) row[v * V + k] = f[j][k];
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < WV; j++) {
      const int v = threadIdx.x + j * blockDim.x;
      if (v >= nw) continue;
      float wf[N];
      widen16<W>(wv[j], wf);
#pragma unroll
      for (int k = 0; k < N; k++) s += wf[k] * row[v * N + k];
    }
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) {
    logits[(i64)r * experts + e] = s;
    __threadfence(); // the logit is visible before the count says so
    last = atomicAdd(done + r, 1) == experts - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int k = threadIdx.x; k < experts; k += blockDim.x) smem[k] = __ldcg(logits + (i64)r * experts + k);
  __syncthreads();
  if (threadIdx.x >= 32) return;
  if (threadIdx.x == 0) done[r] = 0; // ready for the next launch
  router_pick(smem, experts, topK, normalize, out + (i64)r * 2 * topK, counts, slots == nullptr || slots[r] != padSlot);
}

// grid (rows), block 256, dynamic shared memory (experts, rounded up to 4, + hidden when norm_w) · 4 bytes. xn, norm_w: null
// unless the RMSNorm before the router is fused (eps its epsilon).
#define MOE_ROUTER_ENTRY(WS, AS, W, A)                                                                                      \
  extern "C" __global__ void __launch_bounds__(256, 1) moe_router_##WS##_##AS(float *out, const W *w, const A *x, int hidden,  \
                                                                           int experts, int topK, int normalize,            \
                                                                           unsigned long long *counts, const int *slots,    \
                                                                           int padSlot, A *xn, const float *norm_w,         \
                                                                           float eps) {                                     \
    moe_router<W, A>(out, w, x, hidden, experts, topK, normalize, counts, slots, padSlot, xn, norm_w, eps);                 \
  }

MOE_ROUTER_ENTRY(f32, f32, float, float)
MOE_ROUTER_ENTRY(f16, f32, f16_t, float)
MOE_ROUTER_ENTRY(bf16, f32, bf16_t, float)
MOE_ROUTER_ENTRY(f16, f16, f16_t, f16_t)
MOE_ROUTER_ENTRY(bf16, bf16, bf16_t, bf16_t)

// grid (rows, experts), block 256, dynamic shared memory (experts, rounded up to 4, + hidden when the weights'
// vectors are not the activations') · 4 bytes; logits [rows, experts] f32 scratch, done [rows] ints zeroed once
// (each launch leaves them zero).
#define MOE_ROUTER_SPLIT_ENTRY(WS, AS, W, A)                                                                                            \
  extern "C" __global__ void __launch_bounds__(256) moe_router_split_##WS##_##AS(float *out, const W *w, const A *x, int hidden,      \
                                                                               int experts, int topK, int normalize,                  \
                                                                               unsigned long long *counts, const int *slots,          \
                                                                               int padSlot, A *xn, const float *norm_w, float eps,    \
                                                                               float *logits, int *done) {                           \
    moe_router_split<W, A>(out, w, x, hidden, experts, topK, normalize, counts, slots, padSlot, xn, norm_w, eps, logits, done);      \
  }

MOE_ROUTER_SPLIT_ENTRY(f32, f32, float, float)
MOE_ROUTER_SPLIT_ENTRY(f16, f32, f16_t, float)
MOE_ROUTER_SPLIT_ENTRY(bf16, f32, bf16_t, float)
MOE_ROUTER_SPLIT_ENTRY(f16, f16, f16_t, f16_t)
MOE_ROUTER_SPLIT_ENTRY(bf16, bf16, bf16_t, bf16_t)
