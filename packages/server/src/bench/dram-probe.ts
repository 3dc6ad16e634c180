// DRAM read bandwidth, the limit of batch-1 decode. The native probe (bench/probes/dram-read.c, built
// here with the system C compiler and OpenMP, every core, the widest loads) measures what the machine
// allows; without a compiler, the wasm probe stands in. Either way the result says which one ran.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { join } from 'node:path';
import { wasmReadProbe } from './wasm-read-probe.js';

export interface DramProbeResult {
  /** Best of the runs: the fastest read the machine allows, the decode limit. */
  gbPerS: number;
  /** Median of the runs: far below the best when other processes share the memory bus. */
  medianGbPerS: number;
  probe: 'native' | 'wasm';
  /** How it ran, for the table: compiler flags, threads, load width, size, runs. */
  detail: string;
  /** Why the native probe did not run, when it did not. */
  note?: string;
}

const FLAGS = ['-O3', '-march=native', '-fopenmp'];
const RUNS = 7;

/** `root`: where bench/probes/dram-read.c lives; `cacheDir`: where its binary is kept (under probes/). */
export async function dramProbe(root: string, cacheDir: string, threads: number): Promise<DramProbeResult> {
  // 2 GiB, or 1 GiB when memory is short: far beyond any cache either way.
  const mib = freemem() > 8 * 2 ** 30 ? 2048 : 1024;
  const built = buildNative(root, cacheDir);
  let note = 'note' in built ? built.note : undefined;
  if ('binary' in built) {
    const r = spawnSync(built.binary, [String(mib), String(RUNS)], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) }, timeout: 120_000 });
    const out = r.status === 0 ? parseJson(r.stdout) : null;
    if (out && typeof out.gb_per_s === 'number' && typeof out.median_gb_per_s === 'number') {
      return {
        gbPerS: out.gb_per_s, medianGbPerS: out.median_gb_per_s, probe: 'native',
        detail: `native C (${built.cc} ${FLAGS.join(' ')}), ${String(out.threads)} threads, ${String(out.load_bits)}-bit loads, ${mib} MiB, best of ${RUNS}`,
      };
    }
    note = `the native probe failed (${oneLine(r.stderr || r.error?.message || `exit ${r.status}`)})`;
  }
  const w = await wasmReadProbe(threads, Math.min(mib, 1024), RUNS);
  return { gbPerS: w.gbPerS, medianGbPerS: w.medianGbPerS, probe: 'wasm', detail: `wasm SIMD fallback, ${w.threads} worker threads, 128-bit loads, ${w.bytes / 2 ** 20} MiB, best of ${w.runs}`, ...(note ? { note } : {}) };
}

/** Compiles the probe once per source, compiler and flags (cached under <cacheDir>/probes). */
function buildNative(root: string, cacheDir: string): { binary: string; cc: string } | { note: string } {
  const source = join(root, 'bench', 'probes', 'dram-read.c');
  if (!existsSync(source)) return { note: `no probe source at ${source}` };
  const cc = process.env.CC || 'cc';
  const version = spawnSync(cc, ['--version'], { encoding: 'utf8' });
  if (version.error || version.status !== 0) return { note: `no C compiler (${cc})` };
  const key = createHash('sha256').update(readFileSync(source)).update(version.stdout).update(FLAGS.join(' ')).digest('hex').slice(0, 12);
  const dir = join(cacheDir, 'probes');
  const binary = join(dir, `dram-read-${key}`);
  if (existsSync(binary)) return { binary, cc };
  mkdirSync(dir, { recursive: true });
  const r = spawnSync(cc, [...FLAGS, source, '-o', binary], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return { note: `${cc} ${FLAGS.join(' ')} failed: ${oneLine(r.stderr || r.error?.message || '')}` };
  return { binary, cc };
}

export function parseJson(text: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(text.trim().split('\n').at(-1) ?? '');
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function oneLine(s: string): string {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > 200 ? `${t.slice(0, 200)}…` : t;
}
