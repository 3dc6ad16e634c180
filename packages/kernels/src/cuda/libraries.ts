// Finds the CUDA shared libraries (driver, NVRTC, cuBLAS, cuBLASLt) on this machine without loading any.
// Order: ZINFER_CUDA_LIB_DIR, CUDA_HOME / CUDA_PATH, the usual install paths, LD_LIBRARY_PATH, `ldconfig -p`.
// A path with a `stubs` folder in it is never returned: the toolkit's stub libcuda links but fails every
// call, which would make a machine without a GPU look like a broken one.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BackendError } from '@zinfer/core';

export type CudaLibrary = 'cuda' | 'nvrtc' | 'cublas' | 'cublasLt';

/** File names of each library, newest first; the unversioned name (a dev symlink) last. */
export const SONAMES: Record<CudaLibrary, readonly string[]> = {
  cuda: ['libcuda.so.1', 'libcuda.so'],
  nvrtc: ['libnvrtc.so.13', 'libnvrtc.so.12', 'libnvrtc.so.11.2', 'libnvrtc.so'],
  cublas: ['libcublas.so.13', 'libcublas.so.12', 'libcublas.so'],
  cublasLt: ['libcublasLt.so.13', 'libcublasLt.so.12', 'libcublasLt.so'],
};

export interface DiscoveryOptions {
  /** Environment to read (default process.env); tests pass their own. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Search the install paths and the loader's cache (default true); tests turn it off. */
  system?: boolean;
}

const STUBS = /(^|\/)stubs(\/|$)/;

/** Folders to search, in order, without duplicates or stubs. */
export function searchDirs(options: DiscoveryOptions = {}): string[] {
  const env = options.env ?? process.env;
  const dirs: string[] = [];
  const split = (v: string | undefined) => (v ? v.split(':').filter(Boolean) : []);
  dirs.push(...split(env.ZINFER_CUDA_LIB_DIR));
  for (const root of [env.CUDA_HOME, env.CUDA_PATH]) {
    if (root) dirs.push(join(root, 'targets/x86_64-linux/lib'), join(root, 'lib64'), join(root, 'lib'));
  }
  if (options.system !== false) {
    dirs.push('/usr/local/cuda/targets/x86_64-linux/lib', '/usr/local/cuda/lib64');
    for (const v of versionedCudaRoots()) dirs.push(join(v, 'targets/x86_64-linux/lib'), join(v, 'lib64'));
    dirs.push('/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu');
  }
  dirs.push(...split(env.LD_LIBRARY_PATH));
  if (options.system !== false) dirs.push(...ldconfigDirs());
  return [...new Set(dirs)].filter((d) => !STUBS.test(d));
}

/** /usr/local/cuda-X.Y folders, newest version first. */
function versionedCudaRoots(): string[] {
  let names: string[];
  try {
    names = readdirSync('/usr/local').filter((n) => /^cuda-\d+(\.\d+)*$/.test(n));
  } catch {
    return [];
  }
  const version = (n: string) => n.slice(5).split('.').map(Number);
  names.sort((a, b) => {
    const [va, vb] = [version(a), version(b)];
    for (let i = 0; i < Math.max(va.length, vb.length); i++) if ((va[i] ?? 0) !== (vb[i] ?? 0)) return (vb[i] ?? 0) - (va[i] ?? 0);
    return 0;
  });
  return names.map((n) => join('/usr/local', n));
}

/** Folders of the libraries the dynamic loader's cache knows (`ldconfig -p`), in its order. */
function ldconfigDirs(): string[] {
  let out: string;
  try {
    out = execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
  } catch {
    try {
      out = execFileSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    } catch {
      return [];
    }
  }
  const dirs: string[] = [];
  for (const line of out.split('\n')) {
    const m = /=>\s*(\S+)$/.exec(line.trim());
    if (m && /lib(cuda|nvrtc|cublas)/.test(m[1])) dirs.push(dirname(m[1]));
  }
  return dirs;
}

/** The first existing, non-stub file for `lib`, or a BackendError listing every path tried. */
export function findLibrary(lib: CudaLibrary, options: DiscoveryOptions = {}): string {
  const tried: string[] = [];
  for (const dir of searchDirs(options)) {
    for (const name of SONAMES[lib]) {
      const path = join(dir, name);
      tried.push(path);
      if (!existsSync(path)) continue;
      let real: string;
      try {
        real = realpathSync(path);
      } catch {
        continue;
      }
      if (!STUBS.test(real)) return path;
    }
  }
  throw new BackendError(
    `cannot find the CUDA library ${SONAMES[lib][0]} (${describe(lib)}); set ZINFER_CUDA_LIB_DIR to the folder that holds it ` +
      `(for example ${lib === 'cuda' ? '/usr/lib/x86_64-linux-gnu' : '/usr/local/cuda/targets/x86_64-linux/lib'})${lib === 'cuda' ? '' : ', or CUDA_HOME to the toolkit root'}. ` +
      `Tried ${tried.length} paths: ${tried.join(', ')}`,
    { file: SONAMES[lib][0], expected: 'a non-stub library in one of the searched folders', found: 'none' },
  );
}

function describe(lib: CudaLibrary): string {
  return { cuda: 'the NVIDIA driver', nvrtc: 'the CUDA runtime compiler', cublas: 'cuBLAS', cublasLt: 'cuBLASLt' }[lib];
}

/**
 * The toolkit's include folder (cuda_fp16.h and friends) for NVRTC's -I, or null: ZINFER_CUDA_INCLUDE_DIR,
 * the include folder beside the NVRTC library, CUDA_HOME / CUDA_PATH, /usr/local/cuda. zinfer's own kernels
 * include no toolkit header, so this is only handed to NVRTC when present.
 */
export function findIncludeDir(nvrtcPath: string | null, options: DiscoveryOptions = {}): string | null {
  const env = options.env ?? process.env;
  const candidates = [env.ZINFER_CUDA_INCLUDE_DIR];
  if (nvrtcPath) candidates.push(join(dirname(nvrtcPath), '../include'));
  for (const root of [env.CUDA_HOME, env.CUDA_PATH, options.system === false ? undefined : '/usr/local/cuda']) {
    if (root) candidates.push(join(root, 'targets/x86_64-linux/include'), join(root, 'include'));
  }
  for (const c of candidates) if (c && existsSync(join(c, 'cuda_fp16.h'))) return c;
  return null;
}
