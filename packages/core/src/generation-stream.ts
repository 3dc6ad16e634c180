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
  private held = false;
  private resolve!: (r: GenerationResult) => void;
  private reject!: (e: unknown) => void;

  constructor(
    readonly id: number,
    private readonly onCancel: () => void,
    /** Tells the engine that a paused stream wants steps again (its step loop may have gone idle). */
    private readonly onResume: () => void = () => {},
  ) {
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

  /**
   * Backpressure: the engine schedules no step for a paused request (it keeps its KV blocks), so a
   * consumer that cannot deliver output (a slow network reader) stops generation instead of buffering it.
   */
  pause(): void {
    this.held = true;
  }

  resume(): void {
    if (!this.held) return;
    this.held = false;
    this.onResume();
  }

  get paused(): boolean {
    return this.held;
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
