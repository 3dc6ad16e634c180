// The one tsup setup every package builds with: ESM + CJS + d.ts for Node 20, one entry per export.
import { defineConfig } from 'tsup';

export interface PackageBuildOptions {
  /** Shim import.meta.url in the CJS build (for code that finds files next to its module). */
  shims?: boolean;
}

export function packageBuild(entries: string[], options: PackageBuildOptions = {}) {
  return defineConfig({
    entry: entries.map((e) => `src/${e}.ts`),
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    shims: options.shims ?? false,
  });
}
