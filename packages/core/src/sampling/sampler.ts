import { validateSampling, type SamplingParams } from './params.js';
import { Rng } from './rng.js';
import { TokenFilter } from './token-filter.js';

/**
 * One sequence's token picker: its validated params, its rng and a TokenFilter (the processors and the
 * draw; see there). It owns the rng, so a seeded request draws the same tokens however it is batched.
 *
 * Exactly one uniform is drawn per sampled token when temperature > 0, and none when greedy, whether the
 * pick happens here (sample) or on a device (the engine takes draw() and hands it to Program.runSample):
 * a seeded request keeps its tokens on every backend.
 */
export class Sampler {
  readonly params: SamplingParams;
  private readonly rng: Rng;
  private readonly filter: TokenFilter;

  /** Whether sample() is a plain argmax of the logits (greedy, no repetition penalty). */
  get isGreedy(): boolean {
    return this.params.temperature === 0 && this.params.repetitionPenalty === 1;
  }

  get vocabSize(): number {
    return this.filter.vocabSize;
  }

  constructor(params: SamplingParams, vocabSize: number, rng?: Rng) {
    this.filter = new TokenFilter(vocabSize);
    this.params = validateSampling(params);
    const seed = this.params.seed;
    this.rng = rng ?? (seed !== undefined ? Rng.fromSeed(seed) : Rng.fromEntropy());
  }

  /** The uniform in [0, 1) this token's pick uses: the next rng draw when temperature > 0, else 0 (none drawn). */
  draw(): number {
    return this.params.temperature > 0 ? this.rng.next() : 0;
  }

  /**
   * The next token id. `history` is the prompt plus the tokens generated so far (for the repetition
   * penalty). `logits` is read, never written.
   */
  sample(logits: Float32Array, history: ArrayLike<number>): number {
    return this.filter.pick(this.params, logits, history, this.draw());
  }

  /** The distribution sample() draws from, dense over the vocab (0 = filtered out). Allocates. */
  probabilities(logits: Float32Array, history: ArrayLike<number>): Float64Array {
    return this.filter.probabilities(this.params, logits, history);
  }
}
