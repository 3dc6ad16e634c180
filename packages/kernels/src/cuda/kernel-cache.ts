// Compiles the kernel sources for one GPU architecture through NVRTC, caching each CUBIN on disk under
// sm_<arch>-<sha256 of source, headers, options and compiler version>.cubin, so a second start costs no
// compile (NVRTC takes ~0.1 s a file). The cache is best-effort: an unwritable folder only costs time.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@zinfer/core';
import type { KernelSources } from './kernel-sources.js';
import { traceBuild } from './kernel-trace.js';
import type { CompileRequest, Nvrtc } from './nvrtc.js';

export function defaultCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  if (env.ZINFER_CUDA_CACHE_DIR) return env.ZINFER_CUDA_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'zinfer', 'cuda');
}

/**
 * NVRTC options for `arch` (e.g. 90). No fast-math: activations must match the f32 reference. No
 * -lineinfo: NVRTC 11.8 segfaults with it on kernels whose entry points come from multi-line macros (seen
 * here), and a crash would take the whole process down; profilers still see kernel names.
 * ZINFER_CUDA_TRACE=1 adds -DZINFER_TRACE (kernel-trace.ts), and ZINFER_CUDA_DEFINE its switches
 * (buildDefines), so such builds get their own cache entries.
 */
export function nvrtcOptions(arch: number, includeDir: string | null, env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const opts = [`--gpu-architecture=sm_${arch}`, '-std=c++17', '-DZINFER_NVRTC=1'];
  if (traceBuild(env)) opts.push('-DZINFER_TRACE=1'); // the graph timeline's records (kernel-trace.ts)
  for (const d of buildDefines(env)) opts.push(`-D${d}`);
  if (includeDir) opts.push(`-I${includeDir}`);
  return opts;
}

/**
 * Build switches of the kernel sources for A/B experiments: ZINFER_CUDA_DEFINE=NAME[=VALUE],... (each a
 * -D option, so their cubins have cache entries of their own). A malformed entry is a ConfigError.
 */
export function buildDefines(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const list = (env.ZINFER_CUDA_DEFINE ?? '').split(',').map((d) => d.trim()).filter(Boolean);
  const bad = list.find((d) => !/^ZINFER_[A-Z0-9_]+(=[A-Za-z0-9_.]+)?$/.test(d));
  if (bad !== undefined) throw new ConfigError('ZINFER_CUDA_DEFINE takes build switches of the kernel sources', { field: 'ZINFER_CUDA_DEFINE', expected: 'ZINFER_NAME or ZINFER_NAME=VALUE, comma-separated', found: bad });
  return list;
}

export function cubinKey(req: CompileRequest, arch: number, compiler: string): string {
  const h = createHash('sha256');
  const part = (s: string) => h.update(`${s.length}:${s}`);
  part(compiler);
  part(req.name);
  part(req.source);
  for (const name of [...req.headers.keys()].sort()) {
    part(name);
    part(req.headers.get(name) ?? '');
  }
  for (const o of req.options) part(o);
  return `sm_${arch}-${h.digest('hex')}`;
}

export interface CompiledUnits {
  /** .cu file → CUBIN. */
  cubins: Map<string, Uint8Array>;
  /** Files compiled now rather than read from the cache. */
  compiled: string[];
  /** The cache file names (sm_<arch>-<key>.cubin) of every unit; empty when the cache is off. */
  cacheFiles: string[];
}

/** CUBINs of every unit, from the cache where present; cacheDir null turns the cache off. */
export function compileUnits(nvrtc: Nvrtc, sources: KernelSources, arch: number, includeDir: string | null, cacheDir: string | null): CompiledUnits {
  const options = nvrtcOptions(arch, includeDir);
  const cubins = new Map<string, Uint8Array>();
  const compiled: string[] = [];
  const cacheFiles: string[] = [];
  for (const [name, source] of sources.units) {
    const req: CompileRequest = { name, source, headers: sources.headers, options };
    const base = `${cubinKey(req, arch, `nvrtc ${nvrtc.version}`)}.cubin`;
    const file = cacheDir ? join(cacheDir, base) : null;
    if (cacheDir) cacheFiles.push(base);
    const hit = file ? readCached(file) : null;
    if (hit) {
      cubins.set(name, hit);
      continue;
    }
    const cubin = nvrtc.compile(req);
    compiled.push(name);
    cubins.set(name, cubin);
    if (file && cacheDir) writeCached(cacheDir, file, cubin);
  }
  return { cubins, compiled, cacheFiles };
}

function readCached(file: string): Uint8Array | null {
  try {
    const b = readFileSync(file);
    // An ELF header: a truncated or foreign file is recompiled rather than handed to the driver.
    return b.length > 4 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46 ? new Uint8Array(b) : null;
  } catch {
    return null;
  }
}

function writeCached(dir: string, file: string, cubin: Uint8Array): void {
  try {
    mkdirSync(dir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, cubin);
    renameSync(tmp, file); // atomic: a concurrent reader sees the old state or the whole file
  } catch {
    // read-only or full disk: run without the cache
  }
}
