// Where the benchmarks keep their files: bench/ at the repository root (probes/ sources, tmp/ generated
// models and compiled probes, results/ JSON). The root is the nearest folder, above the working
// directory or the running CLI, that holds bench/probes or an npm workspaces package.json.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

export function benchRoot(): string {
  const starts = [process.cwd(), process.argv[1] ? dirname(resolve(process.argv[1])) : null].filter((s): s is string => s !== null);
  for (const start of starts) {
    for (let dir = start; ; dir = dirname(dir)) {
      if (existsSync(join(dir, 'bench', 'probes')) || isWorkspaceRoot(dir)) return dir;
      if (dirname(dir) === dir) break;
    }
  }
  return process.cwd();
}

function isWorkspaceRoot(dir: string): boolean {
  try {
    return 'workspaces' in (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as object);
  } catch {
    return false;
  }
}
