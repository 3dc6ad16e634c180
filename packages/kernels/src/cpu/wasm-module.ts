// Finds and compiles the kernels' .wasm (built from asm/ by scripts/build-wasm.mjs into dist/): the
// relaxed-SIMD FMA build where the engine accepts relaxed SIMD (Node 20's V8 only behind a flag, which is
// set here before validating: V8 flags are process-wide, so the pool's workers instantiate the compiled
// module with it too), else the plain 128-bit SIMD build. The two differ in rounding only (fused
// multiply-adds in the linear microkernels); each is deterministic and batch-invariant on its own.
import { BackendError } from '@zinfer/core';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { requireWasm, type WasmModule } from './wasm-api.js';

export const WASM_FILE_NAME = 'cpu-kernels.wasm';
export const FMA_WASM_FILE_NAME = 'cpu-kernels-fma.wasm';

export interface KernelModule {
  module: WasmModule;
  /** Exported kernel names (k_*), sorted: a kernel's index in this list is its id in dispatches. */
  names: readonly string[];
  path: string;
  /** Whether this is the relaxed-SIMD (FMA) build. */
  fma: boolean;
}

/**
 * Where the plain .wasm is: $ZINFER_CPU_WASM when set (kernels built elsewhere; its FMA build, if any, is
 * the same name with -fma before .wasm); else next to this module when running from dist/ (tsup bundles
 * src/cpu.ts there), or the package's dist/ when running from src/ (tests through tsx).
 */
function candidates(): string[] {
  const env = process.env.ZINFER_CPU_WASM;
  if (env) return [env];
  return [new URL(`./${WASM_FILE_NAME}`, import.meta.url), new URL(`../../dist/${WASM_FILE_NAME}`, import.meta.url)].map((u) => fileURLToPath(u));
}

const fmaPath = (plain: string): string => plain.replace(/\.wasm$/, '-fma.wasm');

/**
 * The FMA build's bytes when it exists and this engine validates relaxed SIMD (after enabling the flag
 * where it is one); null otherwise.
 */
function fmaBytes(plain: string): Uint8Array | null {
  const path = fmaPath(plain);
  if (path === plain || !existsSync(path)) return null;
  const wasm = requireWasm();
  const bytes = readFileSync(path);
  if (wasm.validate(bytes)) return bytes;
  try {
    setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    return null;
  }
  return wasm.validate(bytes) ? bytes : null;
}

/** Whether the FMA build would be used (fma: undefined) or can be (true); false when asked for the plain one. */
export function fmaAvailable(): boolean {
  const plain = candidates().find((p) => existsSync(p));
  return plain !== undefined && fmaBytes(plain) !== null;
}

/**
 * Compiles the kernels. fma: undefined → the FMA build where usable, else the plain one; false → the
 * plain one; true → the FMA build, or an error naming the field when this engine or install lacks it.
 */
export async function loadKernelModule(fma?: boolean): Promise<KernelModule> {
  const path = candidates().find((p) => existsSync(p));
  if (!path) {
    throw new BackendError('the cpu backend kernels are not built', {
      file: candidates()[0], expected: `${WASM_FILE_NAME} (build @zinfer/kernels: npm run build -w @zinfer/kernels)`, found: 'no such file',
    });
  }
  const wasm = requireWasm();
  const fast = fma === false ? null : fmaBytes(path);
  if (fma === true && !fast) {
    throw new BackendError('the cpu backend cannot use its relaxed-SIMD FMA kernels here', {
      field: 'fma', file: fmaPath(path), expected: 'a built cpu-kernels-fma.wasm and a WebAssembly engine with relaxed SIMD', found: existsSync(fmaPath(path)) ? 'the engine rejects relaxed SIMD' : 'no such file',
    });
  }
  const module = await wasm.compile(fast ?? readFileSync(path));
  const names = wasm.Module.exports(module).filter((e) => e.kind === 'function' && e.name.startsWith('k_')).map((e) => e.name).sort();
  return { module, names, path: fast ? fmaPath(path) : path, fma: fast !== null };
}
