#!/usr/bin/env node
// `npm run bench:serve`: the serving load benchmark. `zinfer serve` runs the embedded default model on
// the cpu backend (reference when cpu is not in this build or cannot run here) in a child process; this
// process opens N concurrent WebSocket streams on loopback and checks every token. It measures, in the
// same run: single-stream tokens/s (median of 5 runs around the load), aggregate tokens/s of N streams, their ratio (target
// ≥ 8 at 256 streams), p50/p99 time to first token and inter-token latency, and the server's peak RSS.
// Prints a table; writes bench/results/serve-<machine>.json (and --json FILE).
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildGraph, ConfigReader, describeModel } from '@zinfer/core';
import { AVAILABLE_BACKENDS, createBackend } from './backends.js';
import { benchRoot } from './bench/bench-paths.js';
import { busyCores, fmt, gitCommit, machineInfo, markdownTable, otherProcessesMeter, writeRecord, type BenchRecord } from './bench/bench-results.js';
import { modelCost } from './bench/model-cost.js';
import { DEFAULT_MODEL_NAME, defaultModelDir } from './default-model.js';
import { percentile, runLoad, type LoadParams, type LoadResult, type StreamResult } from './bench-serve-load.js';
import { startServeChild } from './bench-serve-server.js';
import type { Encoding } from './ws-protocol.js';

const TARGET_SPEEDUP = 8;
const WARM_UP_TOKENS = 16;
const WARM_UP_SINGLES = 3;

const { values: a } = parseArgs({
  options: {
    streams: { type: 'string', default: '256' },
    tokens: { type: 'string', default: '64' },
    backend: { type: 'string' },
    model: { type: 'string' },
    threads: { type: 'string' },
    encoding: { type: 'string', default: 'json' },
    'max-batch-tokens': { type: 'string', default: '2048' },
    prompt: { type: 'string', default: 'The jury said that' },
    json: { type: 'string' },
    'results-dir': { type: 'string' },
  },
});

const log = (line: string) => process.stderr.write(`bench:serve: ${line}\n`);
const int = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be an integer >= 1, found ${v}`);
  return n;
};

async function main(): Promise<void> {
  const streams = int('streams', a.streams);
  const tokens = int('tokens', a.tokens);
  const encoding = a.encoding as Encoding;
  if (encoding !== 'json' && encoding !== 'msgpack') throw new Error(`--encoding must be json or msgpack, found ${a.encoding}`);
  const backend = a.backend ?? (await pickBackend());
  const maxBatchTokens = int('max-batch-tokens', a['max-batch-tokens']);
  const machine = machineInfo();
  const model = a.model === undefined ? defaultModelDir() : resolve(a.model);
  // FLOPs of one decode token (every matmul weight once, attention left out: short contexts here), to
  // show how hard each figure drives the cores.
  const cost = modelCost(buildGraph(describeModel(ConfigReader.load(model))), 1);
  const flopsPerToken = 2 * (cost.tokenMatmulParams + cost.selectedMatmulParams);
  const args = ['--model', model, '--backend', backend, '--max-sequences', String(Math.max(streams, 1)), '--max-batch-tokens', String(maxBatchTokens), '--kv-cache-bytes', '512MiB', '--max-requests', String(streams * 2)];
  if (a.threads) args.push('--threads', String(int('threads', a.threads)));
  // Other processes on these cores lower every figure: say so rather than hide it (see BENCHMARKS.md).
  const before = await busyCores();
  if (before > 0.25) log(`warning: ${fmt(before, 2)} of ${machine.cores} cores were busy before the run: the figures will read low`);
  const meter = otherProcessesMeter();
  log(`starting zinfer serve ${args.join(' ')}`);
  const server = await startServeChild(args, log);
  let m: Measured;
  try {
    m = await measure(server.wsUrl, { tokens, prompt: a.prompt!, encoding, temperature: 0.8 }, streams);
    m.peakRss = await server.peakRss();
  } finally {
    await server.stop();
  }
  const during = meter(); // the server child is reaped now, so its CPU time counts as this run's own
  if (during !== null && during > 0.25) log(`warning: other processes kept ${fmt(during, 2)} cores busy during the run: rerun on a quiet machine`);
  const sum = (f: (s: StreamResult) => number) => m.all.reduce((n, s) => n + f(s), 0);
  const ttfts = m.load.streams.map((s) => s.ttftMs);
  const itls = m.load.streams.flatMap((s) => s.itlMs);
  const root = benchRoot();
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const record: BenchRecord = {
    streams,
    tokens_per_stream: tokens,
    lost_tokens: sum((s) => s.lost),
    duplicated_tokens: sum((s) => s.duplicated),
    reordered_tokens: sum((s) => s.reordered),
    text_mismatches: sum((s) => (s.textMismatch ? 1 : 0)),
    aggregate_tokens_per_s: r2(m.load.tokensPerS),
    single_stream_tokens_per_s: r2(m.single),
    speedup: r2(m.load.tokensPerS / m.single),
    target_speedup: TARGET_SPEEDUP,
    decode_gflop_per_token: flopsPerToken / 1e9,
    single_stream_gflops: r2((m.single * flopsPerToken) / 1e9),
    aggregate_gflops: r2((m.load.tokensPerS * flopsPerToken) / 1e9),
    ttft_p50_ms: r2(percentile(ttfts, 0.5)),
    ttft_p99_ms: r2(percentile(ttfts, 0.99)),
    itl_p50_ms: r2(percentile(itls, 0.5)),
    itl_p99_ms: r2(percentile(itls, 0.99)),
    single_stream_itl_p50_ms: r2(percentile(m.singles.flatMap((s) => s.itlMs), 0.5)),
    peak_rss_mb: m.peakRss === null ? null : r2(m.peakRss / 2 ** 20),
    backend: server.backend,
    threads: a.threads ? Number(a.threads) : server.backend === 'reference' ? 1 : (await import('@zinfer/kernels/cpu')).defaultCpuThreads(),
    encoding,
    max_batch_tokens: maxBatchTokens,
    model: a.model === undefined ? DEFAULT_MODEL_NAME : basename(model),
    cpu: machine.cpu,
    cores: machine.cores,
    card: null,
    busy_cores_before: r2(before),
    other_busy_cores_during: during === null ? null : r2(during),
    date: new Date().toISOString(),
    commit: gitCommit(root),
  };
  process.stdout.write(`${table(record)}\n`);
  const out = join(a['results-dir'] ?? join(root, 'bench', 'results'), `serve-${machine.slug}.json`);
  writeRecord(out, record);
  if (a.json) writeRecord(resolve(a.json), record);
  log(`wrote ${out}`);
  const clean = record.lost_tokens === 0 && record.duplicated_tokens === 0 && record.reordered_tokens === 0 && record.text_mismatches === 0;
  if (!clean) throw new Error('tokens were lost, duplicated, reordered or garbled: see the record');
}

interface Measured {
  load: LoadResult;
  /** Median single-stream tokens/s. */
  single: number;
  singles: StreamResult[];
  all: StreamResult[];
  peakRss: number | null;
}

const SINGLE_RUNS_BEFORE = 3;
const SINGLE_RUNS_AFTER = 2;

/** Single streams before and after the N-stream run (median of all: robust to a passing disturbance). */
async function measure(url: string, base: Omit<LoadParams, 'streams' | 'url'>, streams: number): Promise<Measured> {
  const p = { ...base, url };
  // Warm both paths (the JIT tiers up the per-token code, the backend its batched kernels) so that
  // neither figure includes first-run costs: one short N-stream run, then unmeasured single streams.
  log(`warm-up: ${streams} streams of ${WARM_UP_TOKENS} tokens, then ${WARM_UP_SINGLES} single streams`);
  await runLoad({ ...p, streams, tokens: WARM_UP_TOKENS });
  for (let i = 0; i < WARM_UP_SINGLES; i++) await runLoad({ ...p, streams: 1 });
  const rates: number[] = [];
  const singles: StreamResult[] = [];
  const single = async (i: number) => {
    const r = await runLoad({ ...p, streams: 1 });
    rates.push(r.tokensPerS);
    singles.push(...r.streams);
    log(`single stream run ${i}: ${fmt(r.tokensPerS)} tok/s`);
  };
  for (let i = 1; i <= SINGLE_RUNS_BEFORE; i++) await single(i);
  log(`${streams} concurrent streams of ${p.tokens} tokens`);
  const load = await runLoad({ ...p, streams });
  log(`${streams} streams: ${fmt(load.tokensPerS)} tok/s`);
  for (let i = 1; i <= SINGLE_RUNS_AFTER; i++) await single(SINGLE_RUNS_BEFORE + i);
  return { load, single: percentile(rates, 0.5), singles, all: [...load.streams, ...singles], peakRss: null };
}

/** cpu when this build has it and it runs here; reference otherwise (the record says which ran). */
async function pickBackend(): Promise<string> {
  if (!AVAILABLE_BACKENDS.includes('cpu')) return 'reference';
  try {
    await createBackend('cpu');
    return 'cpu';
  } catch (e) {
    log(`cpu backend unavailable (${e instanceof Error ? e.message : String(e)}): using reference`);
    return 'reference';
  }
}

function table(r: BenchRecord): string {
  const n = (k: string, d = 3) => fmt(r[k] as number, d);
  return markdownTable(['measure', 'value'], [
    ['streams', `${r.streams} concurrent WebSocket streams × ${r.tokens_per_stream} tokens (${r.encoding} frames)`],
    ['lost / duplicated / reordered tokens', `${r.lost_tokens} / ${r.duplicated_tokens} / ${r.reordered_tokens} (text mismatches ${r.text_mismatches})`],
    ['aggregate', `${n('aggregate_tokens_per_s')} tok/s`],
    ['single stream', `${n('single_stream_tokens_per_s')} tok/s (median of 5 runs, before and after)`],
    ['aggregate ÷ single', `${n('speedup')} (target ≥ ${r.target_speedup})`],
    ['compute rate', `single stream ${n('single_stream_gflops')} GFLOP/s, aggregate ${n('aggregate_gflops')} GFLOP/s (${n('decode_gflop_per_token', 4)} GFLOP a token)`],
    ['time to first token', `p50 ${n('ttft_p50_ms')} ms, p99 ${n('ttft_p99_ms')} ms`],
    ['inter-token latency', `p50 ${n('itl_p50_ms')} ms, p99 ${n('itl_p99_ms')} ms (single stream p50 ${n('single_stream_itl_p50_ms')} ms)`],
    ['server peak RSS', `${n('peak_rss_mb')} MiB`],
    ['engine', `${r.model} on backend ${r.backend}, ${r.threads} thread(s), max ${r.max_batch_tokens} tokens/step`],
    ['machine', `${r.cpu}, ${r.cores} cores; busy cores before ${r.busy_cores_before}, other processes during ${r.other_busy_cores_during ?? '—'}`],
  ]);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:serve: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
