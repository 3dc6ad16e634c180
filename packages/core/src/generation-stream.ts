// What generate() returns: an async iterator of token events (for streaming) plus a promise of the
// whole result. Events are buffered, so a slow reader never blocks the engine's step loop.

export interface TokenEvent {
  /** Index of this token among the generated ones. */
  index: number;
  token: number;
  /** Text that this token completed (may be '' while a multi-byte character or stop string is pending). */
  text: string;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface GenerationResult {
  tokens: number[];
  /** Decoded text, or null when the model directory has no tokenizer. */
  text: string | null;
  finishReason: FinishReason;
  promptTokens: number;
  /** Logits of every prompt position ([promptTokens][vocab]), when the request asked for them. */
  promptLogits?: Float32Array[];
}

export class GenerationStream implements AsyncIterable<TokenEvent> {
  readonly result: Promise<GenerationResult>;
  private readonly events: TokenEvent[] = [];
  private waiter: (() => void) | null = null;
  private done = false;
  private error: unknown = null;
  private resolve!: (r: GenerationResult) => void;
  private reject!: (e: unknown) => void;

  constructor(readonly id: number, private readonly onCancel: () => void) {
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // The result promise is also surfaced through iteration; avoid unhandled-rejection noise when only one is used.
    this.result.catch(() => {});
  }

  /** Stops generation; the result resolves with finishReason 'abort'. */
  cancel(): void {
    this.onCancel();
  }

  /** @internal engine side */
  push(e: TokenEvent): void {
    this.events.push(e);
    this.wake();
  }

  /** @internal engine side */
  finish(r: GenerationResult): void {
    this.done = true;
    this.resolve(r);
    this.wake();
  }

  /** @internal engine side */
  fail(e: unknown): void {
    this.done = true;
    this.error = e;
    this.reject(e);
    this.wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    for (;;) {
      if (this.events.length) {
        yield this.events.shift()!;
        continue;
      }
      if (this.done) {
        if (this.error) throw this.error;
        return;
      }
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}
