// The one tsup setup every package builds with: ESM + CJS + d.ts for Node 20, one entry per export.
import { defineConfig } from 'tsup';

export function packageBuild(entries: string[]) {
  return defineConfig({
    entry: entries.map((e) => `src/${e}.ts`),
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
  });
}
