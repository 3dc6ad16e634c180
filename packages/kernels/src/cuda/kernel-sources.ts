// The CUDA C++ kernel sources shipped in the package's cuda/ folder, and the parameter lists of their
// `extern "C" __global__` entry points, parsed from the source so every launch is checked against the
// kernel it calls (argument count and kind) before it reaches the driver.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendError } from '@zinfer/core';

/** How one kernel parameter is passed: a device pointer, an int32 or an f32. */
export type ParamKind = 'ptr' | 'i32' | 'f32';

export interface KernelSignature {
  name: string;
  file: string;
  params: readonly { name: string; kind: ParamKind }[];
}

export interface KernelSources {
  dir: string;
  /** name → source of every .cu file. */
  units: ReadonlyMap<string, string>;
  /** name → source of every .cuh header, handed to NVRTC in memory. */
  headers: ReadonlyMap<string, string>;
  kernels: ReadonlyMap<string, KernelSignature>;
}

/** This module's folder, in the ESM build (import.meta.url), the CJS build (__dirname) or the sources. */
function moduleDir(): string | null {
  const url = (import.meta as { url?: string }).url;
  if (typeof url === 'string' && url.startsWith('file:')) return dirname(fileURLToPath(url));
  return typeof __dirname === 'string' ? __dirname : null;
}

/** The cuda/ folder: ZINFER_CUDA_KERNEL_DIR, else beside dist/ (built) or two levels up (src/cuda/). */
export function kernelDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const here = moduleDir();
  const candidates = [env.ZINFER_CUDA_KERNEL_DIR, here && join(here, '../cuda'), here && join(here, '../../cuda')];
  for (const c of candidates) if (c && existsSync(join(c, 'common.cuh'))) return resolve(c);
  throw new BackendError(`cannot find zinfer's CUDA kernel sources (cuda/common.cuh); set ZINFER_CUDA_KERNEL_DIR to the package's cuda folder`, {
    expected: 'common.cuh in one of the candidate folders',
    found: candidates.filter(Boolean).join(', '),
  });
}

export function loadKernelSources(dir = kernelDir()): KernelSources {
  const units = new Map<string, string>();
  const headers = new Map<string, string>();
  for (const f of readdirSync(dir).sort()) {
    if (f.endsWith('.cu')) units.set(f, readFileSync(join(dir, f), 'utf8'));
    else if (f.endsWith('.cuh')) headers.set(f, readFileSync(join(dir, f), 'utf8'));
  }
  const kernels = new Map<string, KernelSignature>();
  for (const [file, src] of units) {
    for (const sig of parseKernelSignatures(src, file)) {
      if (kernels.has(sig.name)) throw new BackendError(`kernel ${sig.name} is defined in both ${kernels.get(sig.name)!.file} and ${file}`);
      kernels.set(sig.name, sig);
    }
  }
  return { dir, units, headers, kernels };
}

/**
 * Every `extern "C" __global__ void name(...)` of a source, comments removed first. Entry points may come
 * from function-like macros (one template instantiated per dtype: `GEMV_ENTRY(1, f16, f16, f16_t, f16_t)`),
 * so those macros are expanded first: parameters substituted, `##` pasted, nested invocations expanded.
 */
export function parseKernelSignatures(source: string, file: string): KernelSignature[] {
  const code = expandMacros(source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, ''), file);
  const re = /extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)/g;
  const out: KernelSignature[] = [];
  for (let m = re.exec(code); m; m = re.exec(code)) {
    const params = m[2].split(',').map((p) => p.trim()).filter(Boolean).map((p) => parseParam(p, m![1], file));
    out.push({ name: m[1], file, params });
  }
  return out;
}

interface Macro {
  params: string[];
  body: string;
}

/** Expands the function-like macros of a comment-free source (object-like ones are left as they are). */
export function expandMacros(code: string, file: string): string {
  const joined = code.replace(/\\\r?\n/g, ' ');
  const macros = new Map<string, Macro>();
  const lines: string[] = [];
  for (const line of joined.split('\n')) {
    const m = /^\s*#\s*define\s+(\w+)\(([^)]*)\)(.*)$/.exec(line);
    if (m) macros.set(m[1], { params: m[2].split(',').map((p) => p.trim()).filter(Boolean), body: m[3].trim() });
    if (!/^\s*#/.test(line)) lines.push(line);
  }
  let text = lines.join('\n');
  if (macros.size === 0) return text;
  const call = new RegExp(`\\b(${[...macros.keys()].join('|')})\\s*\\(`, 'g');
  for (let depth = 0; depth < 16; depth++) {
    let changed = false;
    let out = '';
    let from = 0;
    call.lastIndex = 0;
    for (let m = call.exec(text); m; m = call.exec(text)) {
      const { args, end } = macroArgs(text, m.index + m[0].length, m[1], file);
      const macro = macros.get(m[1])!;
      if (args.length !== macro.params.length && !(macro.params.length === 0 && args.length === 1 && args[0] === '')) {
        throw new BackendError(`macro ${m[1]} in ${file} takes ${macro.params.length} arguments, found ${args.length}`, { file });
      }
      let body = macro.body;
      macro.params.forEach((p, i) => (body = body.replace(new RegExp(`\\b${p}\\b`, 'g'), args[i])));
      out += text.slice(from, m.index) + body.replace(/\s*##\s*/g, '');
      from = end;
      call.lastIndex = end;
      changed = true;
    }
    text = out + text.slice(from);
    if (!changed) return text;
  }
  throw new BackendError(`macros in ${file} expand more than 16 levels deep`, { file });
}

/** The comma-separated arguments of a macro call whose '(' ends just before `start`, and where it ends. */
function macroArgs(text: string, start: number, name: string, file: string): { args: string[]; end: number } {
  const args: string[] = [];
  let depth = 0;
  let cur = '';
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    if (c === ')' && depth-- === 0) {
      args.push(cur.trim());
      return { args, end: i + 1 };
    }
    if (c === ',' && depth === 0) {
      args.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  throw new BackendError(`unterminated call of macro ${name} in ${file}`, { file });
}

function parseParam(decl: string, kernel: string, file: string): { name: string; kind: ParamKind } {
  const name = /(\w+)\s*$/.exec(decl)?.[1] ?? decl;
  const type = decl.slice(0, decl.length - name.length).replace(/__restrict__|\bconst\b/g, '').replace(/\s+/g, ' ').trim();
  if (type.endsWith('*')) return { name, kind: 'ptr' };
  if (type === 'int') return { name, kind: 'i32' };
  if (type === 'float') return { name, kind: 'f32' };
  throw new BackendError(`kernel ${kernel} in ${file} has a parameter of a type the launcher does not pass: ${decl}`, { file, expected: 'a pointer, int or float' });
}
