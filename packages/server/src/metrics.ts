// Prometheus metrics through prom-client, on a Registry of the server's own (never the global one, so
// two servers in a process, or an embedding app, do not collide). Gauges that mirror engine state are
// read at scrape time, so /metrics shows blocks freed by a cancel as soon as the engine frees them.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from '@zinfer/core';
import { registerMoeMetrics } from './moe-metrics.js';
import type { MoeReplanner } from './moe-replan.js';

export type Api = 'ws' | 'completions' | 'chat';

// Token latencies of a CPU engine run from sub-millisecond to seconds.
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly ttft: Histogram<'api'>;
  readonly itl: Histogram<'api'>;
  readonly e2e: Histogram<'api'>;
  readonly promptTokens: Counter<'api'>;
  readonly generationTokens: Counter<'api'>;
  readonly requests: Counter<'api' | 'finish_reason'>;
  readonly errors: Counter<'api' | 'code'>;
  readonly connections: Gauge;
  private engine: Engine | null = null;

  constructor(moe?: MoeReplanner) {
    const registers = [this.registry];
    const engine = () => this.engine;
    this.ttft = new Histogram({ name: 'zinfer_time_to_first_token_seconds', help: 'Time from receiving a request to its first generated token', labelNames: ['api'], buckets: LATENCY_BUCKETS, registers });
    this.itl = new Histogram({ name: 'zinfer_inter_token_latency_seconds', help: 'Time between consecutive generated tokens of a request', labelNames: ['api'], buckets: LATENCY_BUCKETS, registers });
    this.e2e = new Histogram({ name: 'zinfer_e2e_request_latency_seconds', help: 'Time from receiving a request to its last token', labelNames: ['api'], buckets: LATENCY_BUCKETS, registers });
    this.promptTokens = new Counter({ name: 'zinfer_prompt_tokens_total', help: 'Prompt tokens of admitted requests', labelNames: ['api'], registers });
    this.generationTokens = new Counter({ name: 'zinfer_generation_tokens_total', help: 'Generated tokens', labelNames: ['api'], registers });
    this.requests = new Counter({ name: 'zinfer_requests_total', help: 'Finished requests by finish reason (stop, length, abort, error)', labelNames: ['api', 'finish_reason'], registers });
    this.errors = new Counter({ name: 'zinfer_request_errors_total', help: 'Requests and frames refused with an error, by error code', labelNames: ['api', 'code'], registers });
    this.connections = new Gauge({ name: 'zinfer_websocket_connections', help: 'Open WebSocket connections', registers });
    new Gauge({ name: 'zinfer_num_requests_running', help: 'Requests in the running batch (holding KV-cache blocks)', registers, collect() { this.set(engine()?.sequences.running ?? 0); } });
    new Gauge({ name: 'zinfer_num_requests_waiting', help: 'Requests waiting for admission (free KV blocks or a batch slot)', registers, collect() { this.set(engine()?.sequences.waiting ?? 0); } });
    new Gauge({ name: 'zinfer_kv_cache_blocks_total', help: 'KV-cache blocks of the engine', registers, collect() { this.set(engine()?.kvBlocks.total ?? 0); } });
    new Gauge({ name: 'zinfer_kv_cache_blocks_used', help: 'KV-cache blocks held by running requests', registers, collect() { const kv = engine()?.kvBlocks; this.set(kv ? kv.total - kv.free : 0); } });
    new Gauge({ name: 'zinfer_kv_cache_usage_ratio', help: 'Fraction of KV-cache blocks in use', registers, collect() { const kv = engine()?.kvBlocks; this.set(kv && kv.total ? (kv.total - kv.free) / kv.total : 0); } });
    registerMoeMetrics(this.registry, engine, () => moe);
    collectDefaultMetrics({ register: this.registry, prefix: 'zinfer_' });
  }

  /** Points the engine gauges at the engine once it has loaded. */
  attach(engine: Engine): void {
    this.engine = engine;
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
