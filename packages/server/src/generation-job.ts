// One request running on the engine, seen from the server: it streams token events to one consumer
// (a WebSocket session or an HTTP response), records the latency and token metrics, and frees its
// place among the server's requests in flight when it ends, however it ends.
import type { GenerationResult, GenerationStream, TokenEvent } from '@zinfer/core';
import type { Api, ServerMetrics } from './metrics.js';

export type JobOutcome = { ok: true; result: GenerationResult } | { ok: false; error: unknown };

export class Job {
  private readonly startedAt = performance.now();
  private lastAt = 0;
  private tokens = 0;

  constructor(
    readonly stream: GenerationStream,
    readonly promptTokens: number,
    private readonly api: Api,
    private readonly metrics: ServerMetrics,
    private readonly onEnd: () => void,
  ) {
    metrics.promptTokens.inc({ api }, promptTokens);
  }

  /** Calls onToken for every token, in order; resolves (never rejects) when the request has ended. */
  async run(onToken: (ev: TokenEvent) => void): Promise<JobOutcome> {
    try {
      for await (const ev of this.stream) {
        this.observe();
        onToken(ev);
      }
      const result = await this.stream.result;
      this.metrics.requests.inc({ api: this.api, finish_reason: result.finishReason });
      if (this.tokens > 0) this.metrics.e2e.observe({ api: this.api }, (this.lastAt - this.startedAt) / 1000);
      return { ok: true, result };
    } catch (error) {
      this.metrics.requests.inc({ api: this.api, finish_reason: 'error' });
      return { ok: false, error };
    } finally {
      this.onEnd();
    }
  }

  private observe(): void {
    const now = performance.now();
    const { api } = this;
    if (this.tokens === 0) this.metrics.ttft.observe({ api }, (now - this.startedAt) / 1000);
    else this.metrics.itl.observe({ api }, (now - this.lastAt) / 1000);
    this.metrics.generationTokens.inc({ api });
    this.lastAt = now;
    this.tokens++;
  }
}
