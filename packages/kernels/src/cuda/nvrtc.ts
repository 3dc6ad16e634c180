// NVRTC through koffi: compiles CUDA C++ source to a CUBIN for one GPU architecture. Works without a GPU
// (only libnvrtc is needed), which is how the tests compile every kernel on machines that have none.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';
import { findLibrary, type DiscoveryOptions } from './libraries.js';

type Out<T> = [T];

interface NvrtcApi {
  nvrtcVersion(major: Out<number>, minor: Out<number>): number;
  nvrtcGetErrorString(status: number): string;
  nvrtcGetNumSupportedArchs(n: Out<number>): number;
  nvrtcGetSupportedArchs(archs: Int32Array): number;
  nvrtcCreateProgram(prog: Out<bigint | null>, src: string, name: string, numHeaders: number, headers: string[] | null, names: string[] | null): number;
  nvrtcCompileProgram(prog: bigint, numOptions: number, options: string[]): number;
  nvrtcGetProgramLogSize(prog: bigint, size: Out<number>): number;
  nvrtcGetProgramLog(prog: bigint, log: Uint8Array): number;
  nvrtcGetCUBINSize(prog: bigint, size: Out<number>): number;
  nvrtcGetCUBIN(prog: bigint, cubin: Uint8Array): number;
  nvrtcDestroyProgram(prog: Out<bigint | null>): number;
}

export const NVRTC_PROTOTYPES: Record<keyof NvrtcApi, string> = {
  nvrtcVersion: 'int nvrtcVersion(_Out_ int *major, _Out_ int *minor)',
  nvrtcGetErrorString: 'const char *nvrtcGetErrorString(int status)',
  nvrtcGetNumSupportedArchs: 'int nvrtcGetNumSupportedArchs(_Out_ int *n)',
  nvrtcGetSupportedArchs: 'int nvrtcGetSupportedArchs(_Out_ int *archs)',
  nvrtcCreateProgram: 'int nvrtcCreateProgram(_Out_ void **prog, const char *src, const char *name, int numHeaders, const char **headers, const char **names)',
  nvrtcCompileProgram: 'int nvrtcCompileProgram(void *prog, int numOptions, const char **options)',
  nvrtcGetProgramLogSize: 'int nvrtcGetProgramLogSize(void *prog, _Out_ size_t *size)',
  nvrtcGetProgramLog: 'int nvrtcGetProgramLog(void *prog, _Out_ uint8_t *log)',
  nvrtcGetCUBINSize: 'int nvrtcGetCUBINSize(void *prog, _Out_ size_t *size)',
  nvrtcGetCUBIN: 'int nvrtcGetCUBIN(void *prog, _Out_ uint8_t *cubin)',
  nvrtcDestroyProgram: 'int nvrtcDestroyProgram(_Inout_ void **prog)',
};

/**
 * NVRTC dlopens libnvrtc-builtins.so.<version> by name at its first compile, which fails when the toolkit's
 * lib folder is not on the loader's path. Loading it first from NVRTC's own folder satisfies that by soname.
 */
function preloadBuiltins(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^libnvrtc-builtins\.so\.\d+(\.\d+)*$/.test(n));
  } catch {
    return;
  }
  names.sort((a, b) => a.length - b.length);
  if (!names.length) return;
  try {
    koffi.load(join(dir, names[0]));
  } catch {
    // NVRTC reports its own error if it still cannot find them
  }
}

export interface CompileRequest {
  /** File name shown in compiler messages, e.g. 'gemv.cu'. */
  name: string;
  source: string;
  /** Headers the source includes by name ("common.cuh"), resolved in memory rather than on disk. */
  headers: ReadonlyMap<string, string>;
  options: readonly string[];
}

export class Nvrtc {
  readonly version: string;
  private readonly api: NvrtcApi;

  constructor(readonly path: string) {
    const lib = koffi.load(path);
    const api: Partial<NvrtcApi> = {};
    for (const name of Object.keys(NVRTC_PROTOTYPES) as (keyof NvrtcApi)[]) api[name] = lib.func(NVRTC_PROTOTYPES[name]);
    this.api = api as NvrtcApi; // every member was bound above
    const [major, minor]: [Out<number>, Out<number>] = [[0], [0]];
    this.check('nvrtcVersion', this.api.nvrtcVersion(major, minor));
    this.version = `${major[0]}.${minor[0]}`;
  }

  static open(options?: DiscoveryOptions): Nvrtc {
    const path = findLibrary('nvrtc', options);
    preloadBuiltins(dirname(path));
    return new Nvrtc(path);
  }

  /** The real architectures this NVRTC can build CUBINs for (e.g. 90 for sm_90), ascending. */
  supportedArchs(): number[] {
    const n: Out<number> = [0];
    this.check('nvrtcGetNumSupportedArchs', this.api.nvrtcGetNumSupportedArchs(n));
    const archs = new Int32Array(n[0]);
    this.check('nvrtcGetSupportedArchs', this.api.nvrtcGetSupportedArchs(archs));
    return [...archs].sort((a, b) => a - b);
  }

  /** Compiles to a CUBIN; a compile error becomes a BackendError carrying NVRTC's log. */
  compile(req: CompileRequest): Uint8Array {
    const prog: Out<bigint | null> = [null];
    const names = [...req.headers.keys()];
    const bodies = names.map((n) => req.headers.get(n) ?? '');
    this.check('nvrtcCreateProgram', this.api.nvrtcCreateProgram(prog, req.source, req.name, names.length, names.length ? bodies : null, names.length ? names : null), req.name);
    const handle = prog[0];
    if (handle === null) throw new BackendError(`nvrtcCreateProgram returned no program for ${req.name}`);
    try {
      const status = this.api.nvrtcCompileProgram(handle, req.options.length, [...req.options]);
      if (status !== 0) {
        throw new BackendError(
          `NVRTC ${this.version} could not compile ${req.name} (nvrtcCompileProgram: ${this.api.nvrtcGetErrorString(status)}); options ${req.options.join(' ')}\n${this.log(handle)}`,
          { file: req.name },
        );
      }
      const size: Out<number> = [0];
      this.check('nvrtcGetCUBINSize', this.api.nvrtcGetCUBINSize(handle, size), req.name);
      const cubin = new Uint8Array(Number(size[0]));
      this.check('nvrtcGetCUBIN', this.api.nvrtcGetCUBIN(handle, cubin), req.name);
      return cubin;
    } finally {
      this.api.nvrtcDestroyProgram([handle]);
    }
  }

  private log(prog: bigint): string {
    const size: Out<number> = [0];
    if (this.api.nvrtcGetProgramLogSize(prog, size) !== 0 || !size[0]) return '(no log)';
    const buf = new Uint8Array(Number(size[0]));
    if (this.api.nvrtcGetProgramLog(prog, buf) !== 0) return '(log unreadable)';
    return new TextDecoder().decode(buf).replace(/\0+$/, '').trim();
  }

  private check(call: string, status: number, file?: string): void {
    if (status === 0) return;
    throw new BackendError(`NVRTC call ${call} failed with ${this.api.nvrtcGetErrorString(status)} (${status})${file ? ` for ${file}` : ''}`, { file: this.path });
  }
}
