// One request's state inside the engine: its tokens, KV blocks, sampler and stop conditions.
import type { SampleRow } from './contracts.js';
import type { FinishReason, GenerationResult, GenerationStream } from './generation-stream.js';
import type { NormalizedRequest } from './request.js';
import { Rng, Sampler } from './sampling/index.js';
import type { StreamDecoder, TextTokenizer } from './tokenizer.js';

const NO_IDS = new Int32Array(0);

export class Sequence {
  readonly tokens: number[];
  readonly promptLength: number;
  /** Tokens whose k/v are in the cache. */
  cached = 0;
  blockTable: Int32Array | null = null;
  readonly sampler: Sampler;
  readonly promptLogits: Float32Array[] = [];
  finishReason: FinishReason | null = null;
  aborted = false;
  /** Which of the engine's concurrent step lanes computes this sequence (engine.ts; 0 with one lane). */
  lane = 0;
  /** Part of a step still running: its blocks must stay its own until that step is done. */
  inFlight = false;
  private readonly decoder: StreamDecoder | null;
  private text = '';
  private emitted = 0;

  constructor(
    readonly id: number,
    prompt: readonly number[],
    readonly req: NormalizedRequest,
    /** Most tokens this sequence may generate (request and context together). */
    readonly maxNew: number,
    private readonly stopIds: ReadonlySet<number>,
    readonly stream: GenerationStream,
    vocabSize: number,
    tokenizer: TextTokenizer | null,
  ) {
    this.tokens = [...prompt];
    this.promptLength = prompt.length;
    this.sampler = new Sampler(req.sampling, vocabSize, req.sampling.seed === undefined ? Rng.fromEntropy() : Rng.fromSeed(req.sampling.seed));
    this.decoder = tokenizer ? tokenizer.createStreamDecoder({ skipSpecialTokens: true }) : null;
  }

  get generated(): number {
    return this.tokens.length - this.promptLength;
  }

  get prefilling(): boolean {
    return this.cached < this.promptLength;
  }

  /**
   * This token's pick for Program.runSample: the sampler's params and the uniform it draws now (the one
   * sample() would draw), and the distinct ids the repetition penalty applies to.
   */
  sampleRow(): SampleRow {
    const { temperature, topK, topP, minP, repetitionPenalty } = this.sampler.params;
    const penalized = repetitionPenalty === 1 ? NO_IDS : Int32Array.from(new Set(this.tokens));
    return { temperature, topK, topP, minP, repetitionPenalty, uniform: this.sampler.draw(), penalized };
  }

  /** Appends a sampled token, streams its text, and decides whether the sequence is finished. */
  accept(token: number): void {
    this.tokens.push(token);
    const index = this.generated - 1;
    if (this.stopIds.has(token)) return this.end('stop', index, token, this.decoder?.flush() ?? '');
    const piece = this.decoder ? this.decoder.push(token) : '';
    this.text += piece;
    const cut = this.firstStop();
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      return this.end('stop', index, token, '');
    }
    if (this.generated >= this.maxNew) return this.end('length', index, token, this.decoder?.flush() ?? '');
    this.stream.push({ index, token, text: this.release() });
  }

  result(): GenerationResult {
    const r: GenerationResult = {
      tokens: this.tokens.slice(this.promptLength),
      text: this.decoder ? this.text : null,
      finishReason: this.finishReason ?? 'abort',
      promptTokens: this.promptLength,
    };
    if (this.req.promptLogits) r.promptLogits = this.promptLogits;
    return r;
  }

  private end(reason: FinishReason, index: number, token: number, tail: string): void {
    this.text += tail;
    this.finishReason = reason;
    this.stream.push({ index, token, text: this.text.slice(this.emitted) });
    this.emitted = this.text.length;
  }

  /** Text safe to stream: everything except a tail that could still grow into a stop string. */
  private release(): string {
    let hold = 0;
    for (const s of this.req.stopStrings) {
      for (let n = Math.min(s.length - 1, this.text.length); n > hold; n--) {
        if (this.text.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    const upto = Math.max(this.emitted, this.text.length - hold);
    const out = this.text.slice(this.emitted, upto);
    this.emitted = upto;
    return out;
  }

  private firstStop(): number {
    let cut = -1;
    for (const s of this.req.stopStrings) {
      const i = this.text.indexOf(s, Math.max(0, this.emitted - s.length));
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    return cut;
  }
}
