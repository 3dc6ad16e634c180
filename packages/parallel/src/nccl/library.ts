// Finds NCCL's shared library without loading it. Order: ZINFER_NCCL_LIB (the file, or a folder holding
// it), NCCL_HOME / CUDA_HOME, the usual install paths, LD_LIBRARY_PATH, the loader's cache (`ldconfig -p`),
// then pip's nvidia-nccl wheels under python's site-packages.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BackendError } from '@zinfer/core';

export const NCCL_SONAMES = ['libnccl.so.2', 'libnccl.so'] as const;

export interface NcclDiscovery {
  /** Environment to read (default process.env); tests pass their own. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Search the install paths, the loader's cache and python's site-packages (default true). */
  system?: boolean;
}

/** Folders to search, in order, without duplicates. */
export function ncclSearchDirs(options: NcclDiscovery = {}): string[] {
  const env = options.env ?? process.env;
  const split = (v: string | undefined) => (v ? v.split(':').filter(Boolean) : []);
  const dirs: string[] = [];
  for (const root of [env.NCCL_HOME, env.CUDA_HOME]) if (root) dirs.push(join(root, 'lib'), join(root, 'lib64'), join(root, 'targets/x86_64-linux/lib'));
  if (options.system !== false) dirs.push('/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/usr/local/cuda/lib64', '/usr/local/cuda/targets/x86_64-linux/lib');
  dirs.push(...split(env.LD_LIBRARY_PATH));
  if (options.system !== false) dirs.push(...ldconfigDirs(), ...pipNcclDirs());
  return [...new Set(dirs)];
}

/** The NCCL library to load, or a BackendError listing every path tried and how to point zinfer at one. */
export function findNccl(options: NcclDiscovery = {}): string {
  const env = options.env ?? process.env;
  const override = env.ZINFER_NCCL_LIB;
  if (override) {
    const candidates = isDir(override) ? NCCL_SONAMES.map((n) => join(override, n)) : [override];
    const found = candidates.find((c) => existsSync(c));
    if (found) return found;
    throw new BackendError(`ZINFER_NCCL_LIB is set to ${override}, which holds no NCCL library`, { field: 'ZINFER_NCCL_LIB', expected: `${NCCL_SONAMES[0]} or a folder holding it`, found: override });
  }
  const tried: string[] = [];
  for (const dir of ncclSearchDirs(options)) {
    for (const name of NCCL_SONAMES) {
      const path = join(dir, name);
      tried.push(path);
      if (existsSync(path)) return path;
    }
  }
  throw new BackendError(
    `cannot find NCCL (${NCCL_SONAMES[0]}), which CUDA ranks of tensor and pipeline parallelism use for their collectives; ` +
      `install it (apt libnccl2, or pip nvidia-nccl-cu12 / -cu13) or set ZINFER_NCCL_LIB to the library file or its folder. Tried ${tried.length} paths: ${tried.join(', ')}`,
    { file: NCCL_SONAMES[0], expected: 'NCCL in one of the searched folders', found: 'none' },
  );
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Folders of libnccl in the dynamic loader's cache. */
function ldconfigDirs(): string[] {
  for (const bin of ['ldconfig', '/sbin/ldconfig']) {
    try {
      const out = execFileSync(bin, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
      return out.split('\n').flatMap((line) => {
        const m = /libnccl\.so\S*\s.*=>\s*(\S+)$/.exec(line.trim());
        return m ? [dirname(m[1])] : [];
      });
    } catch {
      // try the next
    }
  }
  return [];
}

/** nvidia/nccl/lib of pip's nvidia-nccl-cu* wheels in the usual site-packages folders. */
function pipNcclDirs(): string[] {
  const roots: string[] = [];
  for (const base of ['/usr/local/lib', '/usr/lib', `${process.env.HOME ?? '/root'}/.local/lib`]) {
    let names: string[];
    try {
      names = readdirSync(base).filter((n) => /^python3(\.\d+)?$/.test(n));
    } catch {
      continue;
    }
    for (const n of names) for (const site of ['dist-packages', 'site-packages']) roots.push(join(base, n, site, 'nvidia/nccl/lib'));
  }
  return roots.filter((d) => existsSync(d));
}
