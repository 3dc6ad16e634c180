// `zinfer bench`: the CPU benchmark of issue 3 as a command (benchmarks are commands, never timed tests).
// A random-weight Llama checkpoint (or --model DIR) through createEngine on the chosen backend: decode
// tokens/s at batch 1 and 8, prefill tokens/s and GFLOP/s; and, in the same run on the same machine,
// the DRAM read bandwidth and numpy's GEMM rate, with the ratios against them. Prints a table; writes
// bench/results/<bench>-<machine>.json, and --json FILE.
import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { ConfigError, type FloatDType } from '@zinfer/core';
import { AVAILABLE_BACKENDS, BACKEND_NAMES, createBackend } from './backends.js';
import { benchRoot } from './bench/bench-paths.js';
import { busyCores, fmt, gitCommit, machineInfo, markdownTable, otherProcessesMeter, si, writeRecord, type BenchRecord, type MachineInfo } from './bench/bench-results.js';
import { benchEngine, type EngineBenchResult } from './bench/cpu-bench.js';
import { dramProbe, type DramProbeResult } from './bench/dram-probe.js';
import { gemmProbe, type GemmProbeResult } from './bench/gemm-probe.js';
import { simdPeakProbe, type SimdPeakResult } from './bench/simd-peak-probe.js';
import { BENCH_SHAPE_NAMES, type BenchShapeName } from './bench/model-shapes.js';
import { ensureRandomModel } from './bench/random-model.js';
import { EXIT_OK, UsageError } from './cli-errors.js';
import type { CliIo } from './cli-io.js';
import { parseCount, parseInteger } from './parse-flags.js';

export interface BenchOptions {
  backend: string;
  model?: string;
  shape: BenchShapeName;
  dtype?: FloatDType;
  threads?: number;
  tokens: number;
  batch: number;
  promptTokens: number;
  repeat: number;
  seed: number;
  /** false with --no-probes: no DRAM or GEMM probe, and the ratio keys are null. */
  probes: boolean;
  json?: string;
  resultsDir?: string;
  cacheDir?: string;
}

/** The shape that bench/results/cpu-<machine>.json stands for; other shapes get their name in the file. */
const CANONICAL_SHAPE: BenchShapeName = 'llama-1b';

export function benchCommand(io: CliIo, done: (exitCode: number) => void): Command {
  return new Command('bench')
    .description('benchmark a backend on a random-weight Llama model (or --model DIR): decode and prefill rates against the DRAM bandwidth and numpy GEMM measured in the same run')
    .addOption(new Option('--backend <name>', `kernel backend (available in this build: ${AVAILABLE_BACKENDS.join(', ')})`).choices(BACKEND_NAMES).default('cpu'))
    .addOption(new Option('--model <dir>', 'benchmark this Hugging Face model directory instead of a generated one').conflicts('shape'))
    .addOption(new Option('--shape <name>', 'shape of the generated random-weight Llama model (llama-1b: TinyLlama-1.1B; tiny: a few MB)').choices(BENCH_SHAPE_NAMES).default(CANONICAL_SHAPE))
    .addOption(new Option('--dtype <dtype>', 'weight dtype: of the generated model (default bf16), or to hold --model in (default: as stored)').choices(['f32', 'f16', 'bf16']))
    .addOption(new Option('--threads <n>', 'worker threads of the cpu backend (default: every core, at most 32)').argParser(parseCount))
    .addOption(new Option('--tokens <n>', 'tokens generated per request when timing decode, >= 2').default(32).argParser(parseInteger))
    .addOption(new Option('--batch <n>', 'concurrent requests of the batched decode figure').default(8).argParser(parseCount))
    .addOption(new Option('--prompt-tokens <n>', 'prompt length of the prefill figure').default(512).argParser(parseCount))
    .addOption(new Option('--repeat <n>', 'timed runs of each figure; the median is reported').default(3).argParser(parseCount))
    .addOption(new Option('--seed <n>', 'seed of the random weights and prompts').default(0).argParser(parseInteger))
    .addOption(new Option('--no-probes', 'skip the DRAM and GEMM probes (quick runs, tests): their figures and the ratios are null'))
    .addOption(new Option('--json <file>', 'also write the JSON record to this file'))
    .addOption(new Option('--results-dir <dir>', 'folder of the <bench>-<machine>.json record (default: bench/results at the repository root)'))
    .addOption(new Option('--cache-dir <dir>', 'folder of generated models and compiled probes (default: bench/tmp at the repository root)'))
    .addHelpText('after', '\nProgress goes to stderr; the table to stdout. Exit codes: 0 ok, 1 failed, 2 wrong command line.')
    .action(async (opts: BenchOptions) => done(await runBench(opts, io)));
}

export async function runBench(o: BenchOptions, io: CliIo): Promise<number> {
  if (o.tokens < 2) throw new UsageError('--tokens must be at least 2: decode is timed from the first token to the last', { field: 'tokens', expected: '>= 2', found: String(o.tokens) });
  const log = (line: string) => io.stderr.write(`bench: ${line}\n`);
  if (o.model) checkModelDir(o.model);
  const root = benchRoot();
  const machine = machineInfo();
  const threads = o.threads ?? (await import('@zinfer/kernels/cpu')).defaultCpuThreads();
  // Another process on these cores lowers every figure, probes included; say so rather than hide it.
  // Sampled before the backend exists, whose worker pool may spin.
  const load = await busyCores();
  if (load > 0.25) log(`warning: ${fmt(load, 2)} of ${machine.cores} cores were busy just before the run: other processes are using the CPU, so the figures will read low`);
  // The backend next: a build without it should fail before minutes of model generation.
  const backend = await createBackend(o.backend, { threads });
  const cacheDir = o.cacheDir ?? join(root, 'bench', 'tmp');
  const { dir, shape, dtype } = modelDir(o, cacheDir, log);

  const others = otherProcessesMeter();
  let dram: DramProbeResult | null = null;
  let gemm: GemmProbeResult | null = null;
  let peak: SimdPeakResult | null = null;
  if (o.probes) {
    log('probing DRAM read bandwidth');
    dram = await dramProbe(root, cacheDir, machine.cores);
    log(`DRAM read: ${fmt(dram.gbPerS)} GB/s, median ${fmt(dram.medianGbPerS)} (${dram.detail})${dram.note ? `; ${dram.note}` : ''}`);
    log('probing the reference GEMM (numpy)');
    gemm = gemmProbe(root);
    log(`reference GEMM: ${fmt(gemm.reference.gflops)} GFLOP/s (${gemm.reference.detail})`);
    log(`unrestricted GEMM: ${fmt(gemm.unrestricted.gflops)} GFLOP/s (${gemm.unrestricted.detail})`);
    if (backend.name === 'cpu') {
      log('probing the 128-bit wasm SIMD ceiling');
      peak = await simdPeakProbe(threads);
      log(`wasm SIMD ceiling: ${fmt(peak.gflops)} GFLOP/s (${peak.detail})`);
    }
  }
  log(`benchmarking ${shape} on backend ${backend.name}`);
  const e = await benchEngine({ model: dir, backend, dtype: o.model ? o.dtype : undefined, tokens: o.tokens, batch: o.batch, promptTokens: o.promptTokens, repeat: o.repeat, seed: o.seed, log });

  const during = others();
  if (during !== null && during > 0.25) log(`warning: other processes kept ${fmt(during, 2)} of ${machine.cores} cores busy during the run: the figures read low; rerun on a quiet machine`);
  const kernels = (await backend.probe())?.description ?? null;
  const record = toRecord(o, { shape, dtype, threads: backend.name === 'reference' ? 1 : threads, machine, commit: gitCommit(root), load, during, e, dram, gemm, peak, kernels });
  io.stdout.write(`${table(record, o, dram, gemm, peak)}\n`);
  const bench = o.backend + (shape === CANONICAL_SHAPE ? '' : `-${shape.replace(/^model:/, '')}`);
  const out = join(o.resultsDir ?? join(root, 'bench', 'results'), `${bench}-${machine.slug}.json`);
  writeRecord(out, record);
  if (o.json) writeRecord(resolve(o.json), record);
  log(`wrote ${out}${o.json ? ` and ${o.json}` : ''}`);
  return EXIT_OK;
}

function modelDir(o: BenchOptions, cacheDir: string, log: (line: string) => void): { dir: string; shape: string; dtype: string } {
  if (o.model) {
    return { dir: o.model, shape: `model:${basename(resolve(o.model))}`, dtype: o.dtype ?? 'stored' };
  }
  const dtype = o.dtype ?? 'bf16';
  let last = 0;
  const m = ensureRandomModel({
    shape: o.shape, dtype, cacheDir, seed: o.seed,
    onProgress: (done, total) => {
      const pct = Math.floor((100 * done) / total);
      if (pct >= last + 10 || done === total) log(`writing random weights: ${(last = pct)}%`);
    },
  });
  log(`${m.reused ? 'reusing' : 'generated'} ${m.dir} (${si(m.params)} params, ${si(m.weightBytes, 'B')}, ${m.shards} file${m.shards > 1 ? 's' : ''})`);
  return { dir: m.dir, shape: o.shape, dtype };
}

// The engine would also fail (no config.json), but naming the flag and the path is clearer for a typo.
function checkModelDir(dir: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ConfigError('the model directory does not exist', { field: 'model', expected: 'a Hugging Face model directory', found: dir });
  }
}

interface RecordParts {
  shape: string;
  dtype: string;
  threads: number;
  machine: MachineInfo;
  commit: string | null;
  /** Cores busy (all processes) in the half second before the run. */
  load: number;
  /** Cores kept busy by other processes during the run, on average (null: not measurable here). */
  during: number | null;
  e: EngineBenchResult;
  dram: DramProbeResult | null;
  gemm: GemmProbeResult | null;
  peak: SimdPeakResult | null;
  /** The backend's own description (the cpu one says whether its FMA kernels run). */
  kernels: string | null;
}

function toRecord(o: BenchOptions, p: RecordParts): BenchRecord {
  const { e, dram, gemm, peak } = p;
  const bandwidth = dram?.gbPerS ?? null;
  const gemmRate = gemm?.reference.gflops ?? null;
  const nativeRate = gemm?.unrestricted.gflops ?? null;
  const roofline = bandwidth === null ? null : (bandwidth * 1e9) / e.cost.decodeWeightBytes;
  const r = (x: number, digits = 4) => Number(x.toPrecision(digits));
  return {
    bench: o.backend, backend: o.backend, model_shape: p.shape, dtype: p.dtype, threads: p.threads,
    cpu: p.machine.cpu, cores: p.machine.cores, memory_bytes: p.machine.memoryBytes, card: null,
    date: new Date().toISOString(), commit: p.commit,
    decode_bs1_tokens_per_s: r(e.decodeBs1TokensPerS),
    decode_bs1_ms_per_token: r(1e3 / e.decodeBs1TokensPerS),
    [`decode_bs${o.batch}_tokens_per_s`]: r(e.decodeBatchTokensPerS),
    [`decode_bs${o.batch}_ms_per_step`]: r((1e3 * o.batch) / e.decodeBatchTokensPerS),
    [`prefill_${o.promptTokens}_tokens_per_s`]: r(e.prefillTokensPerS),
    [`prefill_${o.promptTokens}_ms`]: r((1e3 * o.promptTokens) / e.prefillTokensPerS),
    prefill_gflops: r(e.prefillGflops),
    prefill_flops: e.prefillFlops,
    dram_read_gb_per_s: bandwidth === null ? null : r(bandwidth),
    dram_read_median_gb_per_s: dram ? r(dram.medianGbPerS) : null,
    dram_probe: dram?.probe ?? null,
    reference_gemm_gflops: gemmRate === null ? null : r(gemmRate),
    reference_gemm_median_gflops: gemm?.reference.medianGflops == null ? null : r(gemm.reference.medianGflops),
    reference_gemm_config: gemm?.reference.detail ?? null,
    unrestricted_gemm_gflops: nativeRate === null ? null : r(nativeRate),
    unrestricted_gemm_median_gflops: gemm?.unrestricted.medianGflops == null ? null : r(gemm.unrestricted.medianGflops),
    unrestricted_gemm_config: gemm?.unrestricted.detail ?? null,
    wasm_simd_ceiling_gflops: peak ? r(peak.gflops) : null,
    wasm_simd_ceiling_derivation: peak?.detail ?? null,
    cpu_kernels: p.kernels,
    decode_bs1_roofline_tokens_per_s: roofline === null ? null : r(roofline),
    decode_bs1_roofline_ratio: roofline === null ? null : r(e.decodeBs1TokensPerS / roofline, 3),
    prefill_vs_reference_gemm: gemmRate === null ? null : r(e.prefillGflops / gemmRate, 3),
    prefill_vs_unrestricted_gemm: nativeRate === null ? null : r(e.prefillGflops / nativeRate, 3),
    prefill_vs_wasm_simd_ceiling: peak ? r(e.prefillGflops / peak.gflops, 3) : null,
    weight_bytes: e.cost.decodeWeightBytes,
    model_bytes: e.modelBytes,
    params: e.cost.params,
    decode_tokens: o.tokens,
    prompt_tokens: o.promptTokens,
    repeat: o.repeat,
    load_s: r(e.loadS, 3),
    busy_cores_before: r(p.load, 2),
    other_busy_cores_during: p.during === null ? null : r(p.during, 2),
  };
}

function table(rec: BenchRecord, o: BenchOptions, dram: DramProbeResult | null, gemm: GemmProbeResult | null, peak: SimdPeakResult | null): string {
  const n = (k: string) => rec[k] as number | null;
  const gb = (x: number) => si(x, 'B');
  const rows = [
    ['decode, batch 1', `${fmt(n('decode_bs1_tokens_per_s'))} tok/s (${fmt(n('decode_bs1_ms_per_token'))} ms/token)`,
      dram ? `${fmt(n('decode_bs1_roofline_tokens_per_s'))} tok/s = ${fmt(dram.gbPerS)} GB/s ÷ ${gb(n('weight_bytes')!)} read per token` : '—', fmt(n('decode_bs1_roofline_ratio'))],
    [`decode, batch ${o.batch}`, `${fmt(n(`decode_bs${o.batch}_tokens_per_s`))} tok/s (${fmt(n(`decode_bs${o.batch}_ms_per_step`))} ms/step)`, '', ''],
    [`prefill, ${o.promptTokens}-token prompt`, `${fmt(n(`prefill_${o.promptTokens}_tokens_per_s`))} tok/s (${fmt(n(`prefill_${o.promptTokens}_ms`))} ms to first token)`, '', ''],
    ['prefill compute', `${fmt(n('prefill_gflops'))} GFLOP/s`, gemm?.reference.gflops ? `${fmt(gemm.reference.gflops)} GFLOP/s numpy sgemm 2048³ as configured (reference)` : '—', fmt(n('prefill_vs_reference_gemm'))],
    ['', '', gemm?.unrestricted.gflops ? `${fmt(gemm.unrestricted.gflops)} GFLOP/s numpy sgemm, OPENBLAS_CORETYPE unset (unrestricted)` : '—', fmt(n('prefill_vs_unrestricted_gemm'))],
    ['', '', peak ? `${fmt(peak.gflops)} GFLOP/s 128-bit wasm SIMD ceiling (probe)` : '—', fmt(n('prefill_vs_wasm_simd_ceiling'))],
    ['DRAM read (probe)', dram ? `${fmt(dram.gbPerS)} GB/s (median ${fmt(dram.medianGbPerS)})` : 'skipped (--no-probes)', '', ''],
    ['reference GEMM (probe)', gemm ? (gemm.reference.gflops === null ? 'skipped' : `${fmt(gemm.reference.gflops)} GFLOP/s (median ${fmt(gemm.reference.medianGflops)})`) : 'skipped (--no-probes)', '', ''],
    ['unrestricted GEMM (probe)', gemm ? (gemm.unrestricted.gflops === null ? 'skipped' : `${fmt(gemm.unrestricted.gflops)} GFLOP/s (median ${fmt(gemm.unrestricted.medianGflops)})`) : 'skipped (--no-probes)', '', ''],
  ];
  const head = `zinfer bench · backend ${String(rec.backend)}, ${String(rec.threads)} thread(s) · ${String(rec.model_shape)} ${String(rec.dtype)}, ${si(n('params')!)} params, ${gb(n('model_bytes')!)}`;
  const machine = `${String(rec.cpu)}, ${String(rec.cores)} cores, ${fmt(n('memory_bytes')! / 2 ** 30)} GiB · commit ${String(rec.commit ?? 'unknown')} · ${String(rec.date)}`;
  const notes = [
    dram && `DRAM probe: ${dram.detail}${dram.note ? ` (${dram.note})` : ''}`,
    gemm && `GEMM probe (reference): ${gemm.reference.detail}`,
    gemm && `GEMM probe (unrestricted): ${gemm.unrestricted.detail}`,
    peak && `wasm SIMD ceiling: ${peak.detail}`,
    rec.cpu_kernels && `kernels: ${String(rec.cpu_kernels)}`,
    `decode: ${o.tokens} tokens per request, greedy, eos ignored, timed from each stream's first token to its last; median of ${o.repeat}`,
    `prefill GFLOP/s = (2·T·matmul params + 2·LM-head params + Σ layers 2·heads·headDim·T(T+1)) ÷ time to first token, T = ${o.promptTokens}`,
  ].filter(Boolean);
  return [head, machine, '', markdownTable(['measure', 'value', 'limit or peer, same run', 'ratio'], rows), '', ...notes].join('\n');
}
