/**
 * A seedable PRNG: xoshiro128** (Blackman & Vigna). It needs only 32-bit integer ops, so it stays fast
 * in JS (Math.imul, no BigInt per draw), and its 128-bit state is plenty for sampling.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  private constructor(s: ArrayLike<number>) {
    this.a = s[0] | 0;
    this.b = s[1] | 0;
    this.c = s[2] | 0;
    this.d = s[3] | 0;
    // All-zero is xoshiro's one fixed point (it would return 0 forever).
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /**
   * Same seed, same sequence. The seed goes through splitmix64, as the xoshiro authors recommend, so
   * nearby seeds (0, 1, 2, ...) give unrelated streams. BigInt is fine here: it runs once per request.
   */
  static fromSeed(seed: number): Rng {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`Rng seed must be a safe integer, found ${seed}`);
    let x = BigInt.asUintN(64, BigInt(seed));
    const words: number[] = [];
    for (let i = 0; i < 2; i++) {
      x = BigInt.asUintN(64, x + 0x9e3779b97f4a7c15n);
      let z = x;
      z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
      z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
      z ^= z >> 31n;
      words.push(Number(z & 0xffffffffn), Number(z >> 32n));
    }
    return new Rng(words);
  }

  /** An unpredictable stream, seeded from the platform's crypto (Node >= 20 and browsers). */
  static fromEntropy(): Rng {
    return new Rng(globalThis.crypto.getRandomValues(new Uint32Array(4)));
  }

  /** Resumes a stream saved with state(). */
  static fromState(state: ArrayLike<number>): Rng {
    if (state.length !== 4) throw new RangeError(`Rng state must have 4 words, found ${state.length}`);
    return new Rng(state);
  }

  state(): Uint32Array {
    return Uint32Array.of(this.a, this.b, this.c, this.d);
  }

  /** A uniform integer in [0, 2^32). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** A uniform float in [0, 1) with 53 random bits (every double of the form k / 2^53). */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
