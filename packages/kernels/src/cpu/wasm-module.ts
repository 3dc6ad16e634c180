// Finds and compiles the kernels' .wasm (built from asm/ by scripts/build-wasm.mjs into dist/).
import { BackendError } from '@zinfer/core';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { requireWasm, type WasmModule } from './wasm-api.js';

export const WASM_FILE_NAME = 'cpu-kernels.wasm';

export interface KernelModule {
  module: WasmModule;
  /** Exported kernel names (k_*), sorted: a kernel's index in this list is its id in dispatches. */
  names: readonly string[];
  path: string;
}

/**
 * Where the .wasm is: $ZINFER_CPU_WASM when set (kernels built elsewhere); else next to this module when
 * running from dist/ (tsup bundles src/cpu.ts there), or the package's dist/ when running from src/
 * (tests through tsx).
 */
function candidates(): string[] {
  const env = process.env.ZINFER_CPU_WASM;
  if (env) return [env];
  return [new URL(`./${WASM_FILE_NAME}`, import.meta.url), new URL(`../../dist/${WASM_FILE_NAME}`, import.meta.url)].map((u) => fileURLToPath(u));
}

export async function loadKernelModule(): Promise<KernelModule> {
  const path = candidates().find((p) => existsSync(p));
  if (!path) {
    throw new BackendError('the cpu backend kernels are not built', {
      file: candidates()[0], expected: `${WASM_FILE_NAME} (build @zinfer/kernels: npm run build -w @zinfer/kernels)`, found: 'no such file',
    });
  }
  const wasm = requireWasm();
  const module = await wasm.compile(readFileSync(path));
  const names = wasm.Module.exports(module).filter((e) => e.kind === 'function' && e.name.startsWith('k_')).map((e) => e.name).sort();
  return { module, names, path };
}
