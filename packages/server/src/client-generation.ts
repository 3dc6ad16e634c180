// One generation on a client connection: an async iterator over its text deltas (or, with events(),
// over the delta events with their token index), a `done` promise, cancel() and AbortSignal support.
// Events are queued as they arrive, so a slow loop body loses nothing.
import { ZinferClientError } from './client-error.js';
import type { ErrorEvent, ResponseCreateEvent, ResponseDoneEvent, ResponseTextDeltaEvent, ServerEvent } from './ws-protocol.js';

export type GenerateParams = Omit<ResponseCreateEvent, 'type'>;

export interface GenerateOptions {
  /** Aborting cancels the generation on the server; the iterator then throws the signal's reason. */
  signal?: AbortSignal;
}

export class Generation implements AsyncIterable<string> {
  /** Resolves with response.done (status completed, incomplete or cancelled); rejects on an error. */
  readonly done: Promise<ResponseDoneEvent>;
  private readonly queue: ResponseTextDeltaEvent[] = [];
  private ended = false;
  private failure: unknown = null;
  private waiter: (() => void) | null = null;
  private resolveDone!: (d: ResponseDoneEvent) => void;
  private rejectDone!: (e: unknown) => void;
  private consumed = false;

  constructor(readonly requestId: string, private readonly sendCancel: () => void, private readonly signal?: AbortSignal) {
    this.done = new Promise((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    this.done.catch(() => {}); // also surfaced through iteration
    if (signal?.aborted) this.fail(signal.reason);
    else signal?.addEventListener('abort', () => this.abort(), { once: true });
  }

  /** Asks the server to stop; `done` then resolves with status 'cancelled'. */
  cancel(): void {
    if (!this.ended) this.sendCancel();
  }

  /** The text deltas, in order. */
  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for await (const ev of this.events()) yield ev.delta;
  }

  /** The delta events (request_id, index, token, delta), in order. */
  async *events(): AsyncGenerator<ResponseTextDeltaEvent> {
    if (this.consumed) throw new ZinferClientError('a generation can be iterated once', { code: 'E_USAGE', requestId: this.requestId });
    this.consumed = true;
    for (;;) {
      if (this.failure !== null) throw this.failure;
      if (this.queue.length) {
        yield this.queue.shift()!;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  /** The whole text, once done. */
  async text(): Promise<string> {
    return (await this.done).text;
  }

  /** @internal client side */
  receive(ev: ServerEvent): void {
    if (ev.type === 'response.text.delta') this.queue.push(ev);
    else if (ev.type === 'response.done') {
      this.ended = true;
      this.resolveDone(ev);
    } else if (ev.type === 'error') this.fail(fromErrorEvent(ev));
    this.wake();
  }

  /** @internal client side */
  fail(e: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = e;
    this.rejectDone(e);
    this.wake();
  }

  private abort(): void {
    if (this.ended) return;
    this.sendCancel();
    // The iterator stops now; `done` still follows the server (status cancelled) unless it fails.
    this.failure = this.signal?.reason ?? new ZinferClientError('aborted', { code: 'E_ABORTED', requestId: this.requestId });
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }
}

function fromErrorEvent(ev: ErrorEvent): ZinferClientError {
  const e = ev.error;
  return new ZinferClientError(e.message, { code: e.code, param: e.param, expected: e.expected, found: e.found, requestId: ev.request_id });
}
