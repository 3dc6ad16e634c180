// Sampling on the GPU: each row's token from its f32 logits, picked as core's TokenFilter.pick picks it
// (src/sampling/token-filter.ts in @zinfer/core), so only ids cross PCIe and a seeded request keeps its
// tokens on every backend. Per row: NaN → -Infinity, the repetition penalty at the row's distinct history
// ids, then greedy (temperature 0, or nothing finite: the lowest id of the maximum), else
//   top-k: every score ≥ the k-th (ties kept), by a radix select on the scores' order-preserving bits;
//   weights: w = exp((s - max) / T) in f64 (the maximum gets 1);
//   top-p: a token stays while the mass ranked above it (score descending, id ascending) is < topP of the
//          total: a radix select by mass finds the score of the last kept rank, and ties at that score are
//          kept in ascending id order as long as the rule holds;
//   min-p: w ≥ minP and w > 0;
//   draw: r = uniform × (kept mass); the first id, ascending, whose cumulative kept mass exceeds r.
// The host sums in other orders, so the two can differ only where f64 rounding decides a comparison that
// sits exactly on a boundary (top-p's mass against topP, or r against a cumulative mass). The top-p
// histograms add masses with atomics, so such a boundary case may also differ between two GPU runs.
//
// A row is split over the C blocks of a thread-block cluster (cluster.cuh; the host picks C per launch in
// src/cuda/sample-launch.ts, 1 before sm_90): block c takes a contiguous slice of the ids. One block a row
// walked a 32,000-wide row about ten times alone (+0.3 ms a decode step for top-p, +1.1 ms at 152k), and at
// 64 rows used 64 of the SMs. Whatever needs the whole row (the maximum, the radix histograms, the total
// mass, the id-ordered prefix) each block reduces over its slice, then reads every block's partial from
// distributed shared memory after a cluster barrier and combines them in block order, so every block holds
// the same value and makes the same choices. Each exchange has its own slot (a slot is never rewritten
// while another block may read it), the radix histograms alternate between two buffers by round, and every
// block passes a last cluster barrier before it exits, so no block reads a finished block's memory.
//
// The row's scores (f32) and weights (f64) live in scratch rows in global memory (L2 at these sizes): the
// slice's passes read them strided (coalesced), the last two in contiguous chunks a thread (the id-ordered
// scans).
#include "cluster.cuh"

#define SAMPLE_THREADS 1024
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define RADIX_BINS 256
// Tokens a thread loads before it uses any, SAMPLE_THREADS apart (coalesced): a block walks its slice many
// times, so its passes are bound by L2 latency unless several loads are in flight.
#define SAMPLE_ITEMS 4
#define SAMPLE_ROUND (SAMPLE_THREADS * SAMPLE_ITEMS)
#define NO_ID 0x7fffffff

// One row's settings, packed by src/cuda/sample-launch.ts (56 bytes, f64 fields first).
struct SampleParams {
  double temperature, top_p, min_p, penalty, uniform;
  int top_k; // 0 or ≥ the row's finite count: off
  int pen_start, pen_count; // the row's distinct penalized ids in `penalized`
  int pad;
};

// Order-preserving bits of a float: a > b ⇔ key(a) > key(b); -0 and +0 map to one key (they compare equal).
__device__ __forceinline__ u32 order_key(float f) {
  u32 b = __float_as_uint(f);
  if (b == 0x80000000u) b = 0;
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
#define KEY_NEG_INF 0x007fffffu

// What a block shares: scratch for its own reductions, its radix histograms, and one slot per value the
// cluster exchanges (read by the other blocks after a cluster barrier).
struct SampleShared {
  double hist_count[2][RADIX_BINS]; // this block's histograms, the buffer alternating by radix round
  double hist_mass[2][RADIX_BINS];
  double sum_count[RADIX_BINS]; // the round's histograms summed over the cluster
  double sum_mass[RADIX_BINS];
  double red[SAMPLE_WARPS];
  int red_i[SAMPLE_WARPS];
  int red_n[SAMPLE_WARPS];
  u32 digit;
  double above;
  // The cluster's values as every block computes them (written by thread 0, read by all after a barrier).
  float best;
  int best_id, finite;
  double total, offset, top_ties;
  int top;
  // Exchange slots: this block's partial of each value.
  float x_best;
  int x_best_id, x_finite;
  double x_mass, x_ties, x_kept;
  int x_last, x_claim;
};

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block, the same tree for every call (deterministic); every thread gets it.
__device__ double block_sum_f64(double v, SampleShared &sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum_f64(v);
  if (lane == 0) sh.red[warp] = v;
  __syncthreads();
  double t = warp_sum_f64(lane < SAMPLE_WARPS ? sh.red[lane] : 0.0);
  __syncthreads();
  return t;
}

// Inclusive scan over the threads in thread order; returns (exclusive, inclusive) and the block's total,
// which is bit for bit the last thread's inclusive. Exclusive of thread t+1 is inclusive of thread t bit for
// bit within a warp and across warps, but the shuffle scan may give a thread of value 0 an inclusive above
// its exclusive by rounding: users must not rely on the threads' ranges tiling [0, total) exactly.
__device__ void block_scan_f64(double v, double &excl, double &incl, double &total, SampleShared &sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  double x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) sh.red[warp] = x;
  __syncthreads();
  if (warp == 0) {
    double w = sh.red[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    sh.red[lane] = w; // inclusive over warps
  }
  __syncthreads();
  const double before = warp > 0 ? sh.red[warp - 1] : 0.0;
  incl = before + x;
  const double prev = __shfl_up_sync(0xffffffffu, incl, 1);
  excl = lane > 0 ? prev : before;
  total = sh.red[SAMPLE_WARPS - 1];
  __syncthreads();
}

// This thread's SAMPLE_ITEMS scores of the round starting at `base` (SAMPLE_THREADS apart, every load issued
// before any is used), -Infinity past the slice.
__device__ __forceinline__ void load_round(const float *s, int base, int hi, float (&v)[SAMPLE_ITEMS]) {
#pragma unroll
  for (int k = 0; k < SAMPLE_ITEMS; k++) v[k] = base + k * SAMPLE_THREADS < hi ? s[base + k * SAMPLE_THREADS] : NEG_INF;
}

// (v, i) beats (bv, bi): a higher score, or the same score and a lower id.
__device__ __forceinline__ bool sample_better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

// The best (score, id) over the warp's lanes and the sum of their counts; every lane gets them.
__device__ __forceinline__ void warp_argmax_count(float &best, int &bi, int &n) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (sample_better(ov, oi, best, bi)) {
      best = ov;
      bi = oi;
    }
    n += __shfl_xor_sync(0xffffffffu, n, o);
  }
}

// The row's max score with the lowest id on ties, and its count of scores above -Infinity, from the slices
// [lo, hi) of every block of the cluster: left in sh.best, sh.best_id, sh.finite.
__device__ void cluster_argmax(const float *s, int lo, int hi, int blocks, SampleShared &sh) {
  float best = NEG_INF;
  int bi = NO_ID, n = 0;
  for (int base = lo + threadIdx.x; base < hi; base += SAMPLE_ROUND) {
    float v[SAMPLE_ITEMS];
    load_round(s, base, hi, v);
#pragma unroll
    for (int k = 0; k < SAMPLE_ITEMS; k++) {
      const int i = base + k * SAMPLE_THREADS;
      if (i < hi && sample_better(v[k], i, best, bi)) {
        best = v[k];
        bi = i;
      }
      n += i < hi && v[k] != NEG_INF;
    }
  }
  warp_argmax_count(best, bi, n);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sh.red[warp] = best;
    sh.red_i[warp] = bi;
    sh.red_n[warp] = n;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    best = NEG_INF;
    bi = NO_ID;
    n = 0;
    for (int w = 0; w < SAMPLE_WARPS; w++) {
      const float v = (float)sh.red[w];
      if (sample_better(v, sh.red_i[w], best, bi)) {
        best = v;
        bi = sh.red_i[w];
      }
      n += sh.red_n[w];
    }
    sh.x_best = best;
    sh.x_best_id = bi;
    sh.x_finite = n;
  }
  cluster_sync();
  if (warp == 0) { // lane c reads block c (the reads in flight together); the pick is order-free
    const bool in = lane < blocks;
    best = in ? cluster_read(&sh.x_best, lane) : NEG_INF;
    bi = in ? cluster_read(&sh.x_best_id, lane) : NO_ID;
    n = in ? cluster_read(&sh.x_finite, lane) : 0;
    warp_argmax_count(best, bi, n);
    if (lane == 0) {
      sh.best = best;
      sh.best_id = bi == NO_ID ? 0 : bi; // nothing in the row: id 0, as the host picks
      sh.finite = n;
    }
  }
  __syncthreads();
}

// Radix select from the top over the row (every block's slice): the key K of the rank where `above + value
// of the ranks down to it` first reaches goal × scale (count mode: value 1 a token, scale 1, goal k → the
// k-th largest; mass mode: value w, scale = total mass, goal topP → the last rank top-p keeps). Tokens
// taken: score above -Infinity, key ≥ kmin, and in mass mode w > 0. On return sh.above is the value of the
// tokens with key > K, and *ties the number of tokens with key K. `round` counts the cluster's histogram
// rounds (it picks the buffer): a block clears buffer b for round j + 2 only after the barrier of round
// j + 1, which every block reaches after it has read round j's.
__device__ u32 radix_select(const float *s, const double *w, int lo, int hi, int blocks, int &round, u32 kmin, bool mass, double goal, double scale, double *ties, SampleShared &sh) {
  u32 prefix = 0, mask = 0;
  if (threadIdx.x == 0) sh.above = 0.0;
  for (int shift = 24; shift >= 0; shift -= 8, round++) {
    double *hc = sh.hist_count[round & 1], *hm = sh.hist_mass[round & 1];
    for (int b = threadIdx.x; b < RADIX_BINS; b += SAMPLE_THREADS) hc[b] = hm[b] = 0.0;
    __syncthreads();
    // Logits crowd into a few bins (one exponent byte holds most of them), so one shared atomic per token
    // serializes the block (~0.5 ms for 32,000 tokens): lanes with the same bin add up first and their
    // lowest lane adds once. Every lane takes part in every round (bin -1: nothing to add): the loop runs
    // while any lane of the warp has a token (lo is a multiple of 32, so a warp's lanes agree), since the
    // warp intrinsics below name all 32 lanes.
    for (int base = lo + threadIdx.x; base - (int)(threadIdx.x & 31) < hi; base += SAMPLE_ROUND) {
      float v[SAMPLE_ITEMS];
      double x[SAMPLE_ITEMS];
#pragma unroll
      for (int k = 0; k < SAMPLE_ITEMS; k++) {
        const int i = base + k * SAMPLE_THREADS;
        v[k] = i < hi ? s[i] : NEG_INF;
        x[k] = mass && i < hi ? w[i] : 1.0;
      }
#pragma unroll
      for (int k = 0; k < SAMPLE_ITEMS; k++) {
        const u32 key = order_key(v[k]);
        const int bin = v[k] != NEG_INF && key >= kmin && (key & mask) == prefix && x[k] > 0.0 ? (int)((key >> shift) & 0xffu) : -1;
        if (!__any_sync(0xffffffffu, bin >= 0)) continue; // the whole warp's tokens are outside the prefix
        const unsigned peers = __match_any_sync(0xffffffffu, bin);
        double sum = 0.0;
        if (mass) // over the lanes with a bin, in lane order: the same sum for the same lanes
          for (unsigned m = __ballot_sync(0xffffffffu, bin >= 0); m; m &= m - 1) {
            const int j = __ffs(m) - 1;
            const double y = __shfl_sync(0xffffffffu, x[k], j);
            if ((peers >> j) & 1u) sum += y;
          }
        if (bin >= 0 && (threadIdx.x & 31) == __ffs(peers) - 1) {
          atomicAdd(&hc[bin], (double)__popc(peers));
          if (mass) atomicAdd(&hm[bin], sum);
        }
      }
    }
    cluster_sync();
    // The cluster's histogram, summed in block order (every block gets the same sums).
    for (int b = threadIdx.x; b < RADIX_BINS; b += SAMPLE_THREADS) {
      sh.sum_count[b] = cluster_sum_f64(&hc[b], blocks);
      sh.sum_mass[b] = mass ? cluster_sum_f64(&hm[b], blocks) : 0.0;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      // Lane l takes bins 255-8l … 248-8l (from the top); a warp scan gives each lane the value above its bins.
      const int lane = threadIdx.x;
      const double *val = mass ? sh.sum_mass : sh.sum_count;
      double mine = 0.0;
#pragma unroll
      for (int j = 0; j < 8; j++) mine += val[255 - 8 * lane - j];
      double incl = mine;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
      }
      double acc = sh.above + (incl - mine);
      int hit = -1, lowest = -1;
      double above_hit = 0.0;
      for (int j = 0; j < 8; j++) {
        const int b = 255 - 8 * lane - j;
        if (sh.sum_count[b] == 0.0) continue;
        lowest = b;
        if (hit < 0 && (acc + val[b]) / scale >= goal) {
          hit = b;
          above_hit = acc;
        }
        acc += val[b];
      }
      const unsigned hits = __ballot_sync(0xffffffffu, hit >= 0);
      const unsigned nonempty = __ballot_sync(0xffffffffu, lowest >= 0);
      // The first hit from the top; none (rounding in mass mode) → the lowest non-empty bin.
      const int src = hits ? __ffs(hits) - 1 : 31 - __clz(nonempty);
      const int bin = __shfl_sync(0xffffffffu, hits ? hit : lowest, src);
      double above_bin = __shfl_sync(0xffffffffu, hits ? above_hit : acc - (lowest >= 0 ? val[lowest] : 0.0), src);
      if (lane == src) {
        sh.digit = (u32)bin;
        sh.above = above_bin;
      }
    }
    __syncthreads();
    prefix |= sh.digit << shift;
    mask |= 0xffu << shift;
  }
  *ties = sh.sum_count[prefix & 0xff];
  __syncthreads();
  return prefix;
}

// Writes `v` to this block's slot, waits for the cluster and leaves in thread 0's `before` the sum of the
// blocks ranked below this one and in `all` the sum over every block (both added in block order).
__device__ void cluster_prefix(double v, double *slot, int blocks, double &before, double &all) {
  before = all = 0.0;
  if (threadIdx.x == 0) *slot = v;
  cluster_sync();
  if (threadIdx.x < 32) { // lane c reads block c's slot (the reads in flight together)
    const double mine = threadIdx.x < blocks ? cluster_read(slot, threadIdx.x) : 0.0;
    const int rank = cluster_rank();
    for (int c = 0; c < blocks; c++) {
      if (c == rank) before = all;
      all += __shfl_sync(0xffffffffu, mine, c);
    }
  }
}

// grid (rows × C) with clusters of C blocks (C = 1: an ordinary launch), block (SAMPLE_THREADS). out [rows]:
// the picks; feed (or null): the picks again, as a chained decode's next token ids (CudaProgram.runSampleSteps);
// scores f32 and weights f64 [rows, width]: scratch.
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_f32(int *out, int *feed, const float *logits, int width, const SampleParams *params, const int *penalized, float *scores, double *weights) {
  __shared__ SampleShared sh;
  grid_dep_wait();
  grid_dep_launch();
  const int blocks = cluster_blocks(), rank = cluster_rank();
  const int r = blockIdx.x / blocks;
  // This block's ids [lo, hi): slices a multiple of 32 wide, so the strided passes stay coalesced and a
  // warp's lanes agree on when a slice ends.
  const int slice = ((width + blocks - 1) / blocks + 31) & ~31;
  const int lo = min(width, rank * slice), hi = min(width, lo + slice);
  const SampleParams p = params[r];
  const float *row = logits + (i64)r * width;
  float *s = scores + (i64)r * width;
  double *w = weights + (i64)r * width;

  for (int base = lo + threadIdx.x; base < hi; base += SAMPLE_ROUND) {
    float v[SAMPLE_ITEMS];
#pragma unroll
    for (int k = 0; k < SAMPLE_ITEMS; k++) v[k] = base + k * SAMPLE_THREADS < hi ? __ldcs(row + base + k * SAMPLE_THREADS) : 0.f;
#pragma unroll
    for (int k = 0; k < SAMPLE_ITEMS; k++)
      if (base + k * SAMPLE_THREADS < hi) s[base + k * SAMPLE_THREADS] = v[k] != v[k] ? NEG_INF : v[k];
  }
  __syncthreads();
  // From the caller's logit, as the host does, so an id listed twice would still be penalized once. Each
  // block applies the ids of its slice.
  for (int j = threadIdx.x; j < p.pen_count; j += SAMPLE_THREADS) {
    const int id = penalized[p.pen_start + j];
    if (id < lo || id >= hi) continue;
    const float v = row[id];
    if (v == v) s[id] = v > 0.f ? (float)((double)v / p.penalty) : (float)((double)v * p.penalty);
  }
  __syncthreads();

  cluster_argmax(s, lo, hi, blocks, sh);
  const float best = sh.best;
  if (p.temperature == 0.0 || best == NEG_INF || best == -NEG_INF) {
    if (rank == 0 && threadIdx.x == 0) {
      out[r] = sh.best_id;
      if (feed) feed[r] = sh.best_id;
    }
    cluster_sync(); // the other blocks may still be reading this one's slots
    return;
  }

  int round = 0;
  double ignored;
  const u32 kmin = p.top_k > 0 && p.top_k < sh.finite ? radix_select(s, w, lo, hi, blocks, round, 0, false, (double)p.top_k, 1.0, &ignored, sh) : KEY_NEG_INF + 1;
  double local = 0.0; // this thread's mass, for top-p's total
  for (int base = lo + threadIdx.x; base < hi; base += SAMPLE_ROUND) {
    float v[SAMPLE_ITEMS];
    load_round(s, base, hi, v);
#pragma unroll
    for (int k = 0; k < SAMPLE_ITEMS; k++) {
      const double x = v[k] != NEG_INF && order_key(v[k]) >= kmin ? exp(((double)v[k] - (double)best) / p.temperature) : 0.0;
      if (base + k * SAMPLE_THREADS < hi) w[base + k * SAMPLE_THREADS] = x;
      local += x;
    }
  }
  __syncthreads();

  // top-p: the key of the last kept rank, the mass above it, and how many of its ties stay.
  u32 cut = 0;
  double ties_kept = 0.0;
  if (p.top_p < 1.0) {
    double before, total;
    const double mine = block_sum_f64(local, sh);
    cluster_prefix(mine, &sh.x_mass, blocks, before, total);
    if (threadIdx.x == 0) sh.total = total;
    __syncthreads();
    total = sh.total;
    double ties;
    cut = radix_select(s, w, lo, hi, blocks, round, kmin, true, p.top_p, total, &ties, sh);
    if (threadIdx.x == 0) {
      // Tie t (0-based, ascending id) stays while (above + t·w) / total < topP; t = 0 always does.
      const double wt = exp(((double)__uint_as_float((cut & 0x80000000u) ? (cut & 0x7fffffffu) : ~cut) - (double)best) / p.temperature);
      const double above = sh.above;
      auto stays = [&](double t) { return (above + t * wt) / total < p.top_p; };
      double t = fmin(fmax(floor((p.top_p * total - above) / wt), 0.0), ties - 1.0);
      while (t + 1.0 < ties && stays(t + 1.0)) t += 1.0;
      while (t > 0.0 && !stays(t)) t -= 1.0;
      sh.top_ties = t + 1.0;
    }
    __syncthreads();
    ties_kept = sh.top_ties;
  }

  // Kept weights in ascending id order: contiguous chunks a thread, so a scan of the threads' counts
  // (and of the blocks' before them) gives each tie its rank and a scan of their masses places the draw.
  const int chunk = (hi - lo + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
  const int tlo = min(hi, lo + (int)threadIdx.x * chunk), thi = min(hi, tlo + chunk);
  double tie_rank = 0.0;
  if (p.top_p < 1.0) {
    double my_ties = 0.0, incl, block_ties, before, all;
    for (int i = tlo; i < thi; i++) my_ties += order_key(s[i]) == cut && w[i] > 0.0;
    block_scan_f64(my_ties, tie_rank, incl, block_ties, sh);
    cluster_prefix(block_ties, &sh.x_ties, blocks, before, all);
    if (threadIdx.x == 0) sh.offset = before;
    __syncthreads();
    tie_rank += sh.offset;
  }
  double mass = 0.0;
  int last = -1;
  for (int i = tlo; i < thi; i++) {
    const double x = w[i];
    bool keep = x > 0.0;
    if (keep && p.top_p < 1.0) { // ranks by top-p before min-p, as the host filters
      const u32 key = order_key(s[i]);
      if (key == cut) keep = tie_rank++ < ties_kept;
      else keep = key > cut;
    }
    keep = keep && x >= p.min_p;
    w[i] = keep ? x : 0.0;
    if (keep) {
      mass += x;
      last = i;
    }
  }
  double excl, incl, block_mass;
  block_scan_f64(mass, excl, incl, block_mass, sh);
  // The last kept id of the block, then of the row (the pick when rounding puts r at the very top).
  int top = last;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) top = max(top, __shfl_xor_sync(0xffffffffu, top, o));
  if ((threadIdx.x & 31) == 0) sh.red_i[threadIdx.x >> 5] = top;
  __syncthreads();
  if (threadIdx.x == 0) {
    int t = -1;
    for (int k = 0; k < SAMPLE_WARPS; k++) t = max(t, sh.red_i[k]);
    sh.x_last = t;
    sh.x_claim = NO_ID;
  }
  double before, total;
  cluster_prefix(block_mass, &sh.x_kept, blocks, before, total);
  if (threadIdx.x < 32) {
    int t = (int)threadIdx.x < blocks ? cluster_read(&sh.x_last, threadIdx.x) : -1;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) t = max(t, __shfl_xor_sync(0xffffffffu, t, o));
    if (threadIdx.x == 0) {
      sh.top = t;
      sh.offset = before;
      sh.total = total;
    }
  }
  __syncthreads();
  const double x = p.uniform * sh.total;
  excl += sh.offset;
  incl += sh.offset;
  // last >= 0: rounding can give a chunk with nothing kept a range of its own (block_scan_f64); it must
  // not claim the draw. Ranges that overlap by rounding may both claim: the lowest id wins.
  if (excl <= x && x < incl && last >= 0) {
    // This thread's chunk holds the draw: walk it in id order.
    double acc = excl;
    int pick = last;
    for (int i = tlo; i < thi; i++) {
      acc += w[i];
      if (w[i] > 0.0 && acc > x) {
        pick = i;
        break;
      }
    }
    atomicMin(&sh.x_claim, pick);
  }
  cluster_sync();
  if (rank == 0 && threadIdx.x < 32) {
    int pick = (int)threadIdx.x < blocks ? cluster_read(&sh.x_claim, threadIdx.x) : NO_ID;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) pick = min(pick, __shfl_xor_sync(0xffffffffu, pick, o));
    if (threadIdx.x == 0) {
      out[r] = pick == NO_ID ? sh.top : pick;
      if (feed) feed[r] = out[r];
    }
  }
  cluster_sync(); // block 0 may still be reading the others' claims
}
