import type { SamplingParams } from './params.js';

/** The processors' settings a pick needs (SamplingParams without the seed). */
export type FilterParams = Pick<SamplingParams, 'temperature' | 'topK' | 'topP' | 'minP' | 'repetitionPenalty'>;

/**
 * Picks a token from one row of logits for a given uniform draw u in [0, 1), in the order transformers'
 * generate() applies its processors: repetition penalty, then greedy argmax, or temperature → top-k →
 * top-p → min-p → draw. The draw walks the kept tokens in ascending id order (token i is chosen when u ×
 * total falls in its share), an order any device can reproduce without sorting: Program.runSample
 * kernels compute the same kept set and the same walk, so one uniform per token gives the same id on
 * every backend (up to f64 rounding exactly at a boundary).
 *
 * Scratch buffers sized to the vocab (16 bytes a token, 17 once a large nucleus needs the id walk), so pick() does not allocate: one filter per
 * sequence (Sampler) or per program (a host runSample).
 *
 * Masked logits (-Infinity, and NaN, treated the same) are never drawn. A row with nothing finite does
 * not throw: one bad step (a grammar mask that removes everything, an fp16 overflow) should not fail a
 * whole batch. It falls back to argmax like torch.argmax: the lowest +Infinity id if there is one, else
 * token 0 when every logit is masked; the request then ends through its normal stop conditions.
 */
export class TokenFilter {
  readonly vocabSize: number;
  private readonly scores: Float32Array; // [vocab] logits after the penalty, NaN → -Infinity
  private readonly weights: Float64Array; // [vocab] exp((score - max) / T), set for the ids in `ids`
  private readonly ids: Int32Array; // candidate ids; top-k and top-p move the kept ones to the front
  private readonly before: Before;
  /** Whether the last filter() left ids[0..n) in ascending order (no top-k or top-p reordering). */
  private ascending = true;
  /** [vocab] marks for sortKept's walk, made on first use and left all zero. */
  private kept: Uint8Array | null = null;

  constructor(vocabSize: number) {
    if (!Number.isSafeInteger(vocabSize) || vocabSize < 1) {
      throw new RangeError(`Sampler vocabSize must be a positive integer, found ${vocabSize}`);
    }
    this.vocabSize = vocabSize;
    const scores = (this.scores = new Float32Array(vocabSize));
    // Strict total order on ids: higher score first, ties → lower id, so every cut is deterministic.
    this.before = (a, b) => scores[a] > scores[b] || (scores[a] === scores[b] && a < b);
    this.weights = new Float64Array(vocabSize);
    this.ids = new Int32Array(vocabSize);
  }

  /**
   * The token for the uniform draw `u`. `history` holds the ids the repetition penalty applies to (the
   * prompt and the tokens generated so far; repeats allowed). `logits` is read, never written.
   */
  pick(p: FilterParams, logits: Float32Array, history: ArrayLike<number>, u: number): number {
    const n = this.filter(p, logits, history);
    const { ids, weights } = this;
    if (n === 1) return ids[0];
    if (!this.ascending) this.sortKept(n);
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[ids[i]];
    let r = u * total;
    for (let i = 0; i < n - 1; i++) {
      r -= weights[ids[i]];
      if (r < 0) return ids[i];
    }
    return ids[n - 1]; // rounding left r just above 0; every kept weight is > 0, so this is a fair pick
  }

  /**
   * Puts ids[0..n) in ascending order: a sort when the kept set is small, else a walk over the vocab
   * (a nucleus can keep most of a 150k vocab; marking then walking is linear where sorting is not).
   */
  private sortKept(n: number): void {
    const { ids, vocabSize } = this;
    if (n * Math.log2(n) < vocabSize) {
      ids.subarray(0, n).sort();
      return;
    }
    const kept = (this.kept ??= new Uint8Array(vocabSize));
    for (let i = 0; i < n; i++) kept[ids[i]] = 1;
    let at = 0;
    for (let id = 0; at < n; id++) {
      if (kept[id]) {
        kept[id] = 0;
        ids[at++] = id;
      }
    }
  }

  /** The distribution pick() draws from, dense over the vocab (0 = filtered out). Allocates. */
  probabilities(p: FilterParams, logits: Float32Array, history: ArrayLike<number>): Float64Array {
    const n = this.filter(p, logits, history);
    const { ids, weights } = this;
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[ids[i]];
    const out = new Float64Array(this.vocabSize);
    for (let i = 0; i < n; i++) out[ids[i]] = weights[ids[i]] / total;
    return out;
  }

  /** Leaves the kept ids in ids[0..n) with their weights set, and returns n (always >= 1). */
  private filter(p: FilterParams, logits: Float32Array, history: ArrayLike<number>): number {
    const { scores, weights, ids, vocabSize } = this;
    const { temperature, topK, topP, minP, repetitionPenalty } = p;
    if (logits.length !== vocabSize) {
      throw new RangeError(`Sampler got ${logits.length} logits, its vocabSize is ${vocabSize}`);
    }
    for (let i = 0; i < vocabSize; i++) scores[i] = Number.isNaN(logits[i]) ? -Infinity : logits[i];
    if (repetitionPenalty !== 1) this.penalize(logits, history, repetitionPenalty);

    let best = 0; // strict > keeps the lowest id on ties, like torch.argmax
    for (let i = 1; i < vocabSize; i++) if (scores[i] > scores[best]) best = i;
    const max = scores[best];
    this.ascending = true;
    if (temperature === 0 || !Number.isFinite(max)) {
      ids[0] = best;
      weights[best] = 1;
      return 1;
    }

    let n = 0;
    for (let i = 0; i < vocabSize; i++) if (scores[i] !== -Infinity) ids[n++] = i;
    if (topK > 0 && topK < n) n = this.keepTopK(n, topK);
    // Temperature after top-k only to skip exp() on the tokens top-k dropped; T > 0 keeps the order.
    // Subtracting the max first keeps exp() in range for any temperature; the max gets weight 1.
    for (let i = 0; i < n; i++) weights[ids[i]] = Math.exp((scores[ids[i]] - max) / temperature);
    if (topP < 1) n = this.keepNucleus(n, topP);

    // min-p: p < minP * pMax is w < minP, since the max (weight 1) survives top-k and top-p. Weights that
    // underflowed to 0 go too, so the draw can never land on them. The max stays, so kept >= 1.
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const w = weights[ids[i]];
      if (w > 0 && w >= minP) ids[kept++] = ids[i];
    }
    return kept;
  }

  private penalize(logits: Float32Array, history: ArrayLike<number>, penalty: number): void {
    const { scores, vocabSize } = this;
    checkHistory(history, vocabSize);
    for (let i = 0; i < history.length; i++) {
      const id = history[i];
      // Computed from the caller's logit, not scores[id], so an id seen twice is penalized once
      // (transformers gathers the scores at the history ids, then scatters the penalized values back).
      const v = logits[id];
      if (!Number.isNaN(v)) scores[id] = v > 0 ? v / penalty : v * penalty;
    }
  }

  /** Keeps the k best, plus any tied with the k-th: transformers keeps every score >= the k-th. */
  private keepTopK(n: number, k: number): number {
    const { ids, scores } = this;
    this.ascending = false;
    select(ids, n, k, this.before);
    const kth = scores[ids[k - 1]];
    let m = k;
    for (let i = k; i < n; i++) {
      if (scores[ids[i]] === kth) swap(ids, m++, i);
    }
    return m;
  }

  /**
   * Keeps the shortest run of best tokens whose probability reaches topP: a token stays while the mass
   * ranked above it is < topP. That is transformers' rule (drop where the ascending cumsum <= 1 - top_p)
   * and always keeps the best token. Found by a quickselect that follows the mass instead of a count, so
   * no sort: linear on average even when the nucleus is most of a 150k vocab. The kept ids end up in
   * ids[0..K), unordered.
   */
  private keepNucleus(n: number, topP: number): number {
    const { ids, weights } = this;
    this.ascending = false;
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[ids[i]];
    // Invariant: ids[0..lo) are the lo best, `above` is their mass and is < topP, so rank lo is kept.
    let lo = 0;
    let hi = n - 1;
    let above = 0;
    while (lo < hi) {
      const p = partition(ids, lo, hi, this.before);
      let mass = above; // of the ranks before p
      for (let i = lo; i < p; i++) mass += weights[ids[i]];
      if (mass / total >= topP) {
        hi = p - 1; // rank p is out; the cut is among ids[lo..p)
        continue;
      }
      mass += weights[ids[p]];
      if (mass / total >= topP) return p + 1;
      above = mass;
      lo = p + 1;
    }
    return Math.min(lo + 1, n);
  }
}

/** The repetition penalty's ids must be token ids of the vocab (a device kernel picking as pick() does trusts them). */
export function checkHistory(history: ArrayLike<number>, vocabSize: number): void {
  for (let i = 0; i < history.length; i++) {
    const id = history[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new RangeError(`history[${i}] is ${id}, not a token id in [0, ${vocabSize})`);
  }
}

/** Reorders ids[0..n) so ids[0..k) are the k first under `before` (quickselect). */
function select(ids: Int32Array, n: number, k: number, before: Before): void {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const p = partition(ids, lo, hi, before);
    if (p === k - 1) return;
    if (p > k - 1) hi = p - 1;
    else lo = p + 1;
  }
}

/**
 * Lomuto partition of ids[lo..hi] around a median-of-three pivot, returned at its final place p:
 * ids[lo..p) come before it, ids(p..hi] after. `before` must be a strict total order, which the id
 * tie-break guarantees; median-of-three keeps already-ordered runs (flat logits) linear.
 */
function partition(ids: Int32Array, lo: number, hi: number, before: Before): number {
  const mid = (lo + hi) >>> 1;
  if (before(ids[mid], ids[lo])) swap(ids, mid, lo);
  if (before(ids[hi], ids[lo])) swap(ids, hi, lo);
  if (before(ids[mid], ids[hi])) swap(ids, mid, hi);
  const pivot = ids[hi];
  let p = lo;
  for (let i = lo; i < hi; i++) if (before(ids[i], pivot)) swap(ids, i, p++);
  swap(ids, p, hi);
  return p;
}

type Before = (a: number, b: number) => boolean;

function swap(a: Int32Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}
