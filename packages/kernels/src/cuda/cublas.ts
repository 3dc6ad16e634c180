// cuBLAS through koffi, for linear layers over more than 8 rows: f32 × f32 in parity mode, f16 × f16 or
// bf16 × bf16 (tensor cores) in the 16-bit modes, always accumulating in f32 (CUBLAS_COMPUTE_32F). f32
// parity needs true f32 arithmetic: the default math mode, never _FAST_TF32 (10-bit mantissas).
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';
import type { FloatDType } from '@zinfer/core';
import type { GemmArgs } from './gpu.js';
import { findLibrary, type DiscoveryOptions } from './libraries.js';

type Out<T> = [T];

interface CublasApi {
  cublasCreate_v2(handle: Out<bigint | null>): number;
  cublasDestroy_v2(handle: bigint): number;
  cublasSetStream_v2(handle: bigint, stream: bigint | null): number;
  cublasSetMathMode(handle: bigint, mode: number): number;
  cublasGetStatusName(status: number): string;
  cublasGemmEx(
    handle: bigint, transa: number, transb: number, m: number, n: number, k: number, alpha: Float32Array,
    a: bigint, aType: number, lda: number, b: bigint, bType: number, ldb: number, beta: Float32Array,
    c: bigint, cType: number, ldc: number, computeType: number, algo: number,
  ): number;
}

export const CUBLAS_PROTOTYPES: Record<keyof CublasApi, string> = {
  cublasCreate_v2: 'int cublasCreate_v2(_Out_ void **handle)',
  cublasDestroy_v2: 'int cublasDestroy_v2(void *handle)',
  cublasSetStream_v2: 'int cublasSetStream_v2(void *handle, void *stream)',
  cublasSetMathMode: 'int cublasSetMathMode(void *handle, int mode)',
  cublasGetStatusName: 'const char *cublasGetStatusName(int status)',
  cublasGemmEx:
    'int cublasGemmEx(void *handle, int transa, int transb, int m, int n, int k, const void *alpha, uint64_t A, int Atype, int lda, uint64_t B, int Btype, int ldb, const void *beta, uint64_t C, int Ctype, int ldc, int computeType, int algo)',
};

// From library_types.h and cublas_api.h (CUDA 13).
export const CUBLAS = {
  OP_N: 0,
  OP_T: 1,
  R_32F: 0,
  R_16F: 2,
  R_16BF: 14,
  COMPUTE_32F: 68,
  DEFAULT_MATH: 0,
  GEMM_DEFAULT: -1,
} as const;

/** cudaDataType of each float dtype. */
const DATA_TYPE: Record<FloatDType, number> = { f32: CUBLAS.R_32F, f16: CUBLAS.R_16F, bf16: CUBLAS.R_16BF };

export class Cublas {
  private readonly api: CublasApi;
  private readonly handle: bigint;
  private readonly one = Float32Array.of(1);
  private readonly zero = Float32Array.of(0);

  constructor(readonly path: string) {
    const lib = koffi.load(path);
    const api: Partial<CublasApi> = {};
    for (const name of Object.keys(CUBLAS_PROTOTYPES) as (keyof CublasApi)[]) api[name] = lib.func(CUBLAS_PROTOTYPES[name]);
    this.api = api as CublasApi; // every member was bound above
    const h: Out<bigint | null> = [null];
    this.check('cublasCreate_v2', this.api.cublasCreate_v2(h));
    if (h[0] === null) throw new BackendError('cublasCreate_v2 returned no handle');
    this.handle = h[0];
    this.check('cublasSetMathMode', this.api.cublasSetMathMode(this.handle, CUBLAS.DEFAULT_MATH));
  }

  /** Needs the device's context current (cuBLAS uses it). */
  static open(options?: DiscoveryOptions): Cublas {
    const path = findLibrary('cublas', options);
    // libcublas needs libcublasLt; loading it first (from the same folder when it is there) satisfies that
    // dependency by soname even when the folder is not on the loader's path.
    const beside = join(dirname(path), basename(path).replace('libcublas', 'libcublasLt'));
    koffi.load(existsSync(beside) ? beside : findLibrary('cublasLt', options));
    return new Cublas(path);
  }

  /**
   * y = x · wᵀ in row-major terms. cuBLAS is column-major, where the same memory reads as yᵀ [outF, rows]
   * = W [outF, inF] (the row-major w read as inF × outF, transposed) · xᵀ [inF, rows].
   */
  gemm(stream: bigint | null, g: GemmArgs): void {
    if (g.yDtype !== g.dtype && g.yDtype !== 'f32') throw new BackendError(`cuBLAS GEMM writes ${g.dtype} or f32; asked for ${g.yDtype}`);
    this.check('cublasSetStream_v2', this.api.cublasSetStream_v2(this.handle, stream));
    const status = this.api.cublasGemmEx(
      this.handle, CUBLAS.OP_T, CUBLAS.OP_N, g.outF, g.rows, g.inF, this.one,
      g.w, DATA_TYPE[g.dtype], g.inF, g.x, DATA_TYPE[g.dtype], g.inF, this.zero, g.y, DATA_TYPE[g.yDtype], g.outF, CUBLAS.COMPUTE_32F, CUBLAS.GEMM_DEFAULT,
    );
    this.check('cublasGemmEx', status, `${g.dtype} → ${g.yDtype}, m ${g.outF}, n ${g.rows}, k ${g.inF}`);
  }

  dispose(): void {
    this.api.cublasDestroy_v2(this.handle);
  }

  private check(call: string, status: number, context?: string): void {
    if (status === 0) return;
    let name: string;
    try {
      name = this.api.cublasGetStatusName(status);
    } catch {
      name = `cublasStatus ${status}`;
    }
    throw new BackendError(`cuBLAS call ${call} failed with ${name} (${status})${context ? ` (${context})` : ''}`, { file: this.path });
  }
}
