// cuBLASLt through koffi, for linear layers over more than 8 rows: f32 × f32 in parity mode, f16 × f16 or
// bf16 × bf16 (tensor cores) in the 16-bit modes, always accumulating in f32 (CUBLAS_COMPUTE_32F; f32
// parity needs true f32 arithmetic, never TF32). cuBLASLt rather than cublasGemmEx for a matrix C added by
// the GEMM's epilogue into a separate output D: the residual add after a projection, so no add kernel
// follows it (64 launches fewer in a 64-row 7B step). Each problem's descriptors and the heuristic's first
// usable algorithm are made once and reused (stream-gemm.ts says why not a timed choice).
import koffi from 'koffi';
import { BackendError } from '@zinfer/core';
import type { FloatDType } from '@zinfer/core';
import type { GemmArgs } from './gpu.js';
import { findLibrary, type DiscoveryOptions } from './libraries.js';

type Out<T> = [T];
/** An opaque cuBLASLt handle or descriptor (what koffi returns for a `void *`). */
type Handle = unknown;

interface CublasLtApi {
  cublasLtCreate(handle: Out<Handle>): number;
  cublasLtDestroy(handle: Handle): number;
  cublasLtGetStatusName(status: number): string;
  cublasLtMatmulDescCreate(desc: Out<Handle>, computeType: number, scaleType: number): number;
  cublasLtMatmulDescDestroy(desc: Handle): number;
  cublasLtMatmulDescSetAttribute(desc: Handle, attr: number, buf: Buffer, size: number): number;
  cublasLtMatrixLayoutCreate(layout: Out<Handle>, type: number, rows: number, cols: number, ld: number): number;
  cublasLtMatrixLayoutDestroy(layout: Handle): number;
  cublasLtMatrixLayoutSetAttribute(layout: Handle, attr: number, buf: Buffer, size: number): number;
  cublasLtMatmulPreferenceCreate(pref: Out<Handle>): number;
  cublasLtMatmulPreferenceDestroy(pref: Handle): number;
  cublasLtMatmulPreferenceSetAttribute(pref: Handle, attr: number, buf: Buffer, size: number): number;
  cublasLtMatmulAlgoGetHeuristic(
    handle: Handle, desc: Handle, a: Handle, b: Handle, c: Handle, d: Handle, pref: Handle, count: number, results: Buffer, returned: Out<number>,
  ): number;
  cublasLtMatmul(
    handle: Handle, desc: Handle, alpha: Float32Array, a: bigint, aDesc: Handle, b: bigint, bDesc: Handle, beta: Float32Array, c: bigint, cDesc: Handle,
    d: bigint, dDesc: Handle, algo: Buffer, workspace: bigint, workspaceBytes: number, stream: Handle,
  ): number;
}

export const CUBLAS_PROTOTYPES: Record<keyof CublasLtApi, string> = {
  cublasLtCreate: 'int cublasLtCreate(_Out_ void **handle)',
  cublasLtDestroy: 'int cublasLtDestroy(void *handle)',
  cublasLtGetStatusName: 'const char *cublasLtGetStatusName(int status)',
  cublasLtMatmulDescCreate: 'int cublasLtMatmulDescCreate(_Out_ void **desc, int computeType, int scaleType)',
  cublasLtMatmulDescDestroy: 'int cublasLtMatmulDescDestroy(void *desc)',
  cublasLtMatmulDescSetAttribute: 'int cublasLtMatmulDescSetAttribute(void *desc, int attr, const void *buf, size_t size)',
  cublasLtMatrixLayoutCreate: 'int cublasLtMatrixLayoutCreate(_Out_ void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld)',
  cublasLtMatrixLayoutDestroy: 'int cublasLtMatrixLayoutDestroy(void *layout)',
  cublasLtMatrixLayoutSetAttribute: 'int cublasLtMatrixLayoutSetAttribute(void *layout, int attr, const void *buf, size_t size)',
  cublasLtMatmulPreferenceCreate: 'int cublasLtMatmulPreferenceCreate(_Out_ void **pref)',
  cublasLtMatmulPreferenceDestroy: 'int cublasLtMatmulPreferenceDestroy(void *pref)',
  cublasLtMatmulPreferenceSetAttribute: 'int cublasLtMatmulPreferenceSetAttribute(void *pref, int attr, const void *buf, size_t size)',
  cublasLtMatmulAlgoGetHeuristic:
    'int cublasLtMatmulAlgoGetHeuristic(void *handle, void *desc, void *a, void *b, void *c, void *d, void *pref, int count, void *results, _Out_ int *returned)',
  cublasLtMatmul:
    'int cublasLtMatmul(void *handle, void *desc, const void *alpha, uint64_t A, void *Adesc, uint64_t B, void *Bdesc, const void *beta, uint64_t C, void *Cdesc, uint64_t D, void *Ddesc, const void *algo, uint64_t workspace, size_t workspaceBytes, void *stream)',
};

// From library_types.h, cublas_api.h and cublasLt.h (CUDA 12 and 13).
export const CUBLAS = {
  OP_N: 0,
  OP_T: 1,
  R_32F: 0,
  R_16F: 2,
  R_16BF: 14,
  COMPUTE_32F: 68,
  DESC_TRANSA: 3,
  DESC_TRANSB: 4,
  PREF_MAX_WORKSPACE_BYTES: 1,
  PREF_REDUCTION_SCHEME_MASK: 3,
  /** CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE: split-K partial sums kept in f32 (IN_PLACE and OUTPUT_TYPE round them to y's type). */
  REDUCTION_COMPUTE_TYPE: 2,
  PREF_MIN_ALIGNMENT_A: 5, // …_B 6, _C 7, _D 8
  LAYOUT_BATCH_COUNT: 5,
  /** Elements from one matrix of a strided batch to the next (int64). */
  LAYOUT_STRIDED_BATCH_OFFSET: 6,
} as const;

/** sizeof(cublasLtMatmulHeuristicResult_t): algo (8 × uint64), workspaceSize, state, wavesCount, reserved[4]. */
const HEURISTIC_BYTES = 96;
const ALGO_BYTES = 64;
/** Algorithms asked of the heuristic for each GEMM problem (the first usable one runs). */
const HEURISTIC_COUNT = 4;
/** GEMM problems whose descriptors are kept (per device). */
const MAX_PLANS = 1024;

/** cudaDataType of each float dtype. */
const DATA_TYPE: Record<FloatDType, number> = { f32: CUBLAS.R_32F, f16: CUBLAS.R_16F, bf16: CUBLAS.R_16BF };

/** One GEMM problem's descriptors and algorithm (reused by every call of its shape). */
export interface GemmPlan {
  readonly key: string;
  readonly algo: Buffer;
  readonly desc: Handle;
  readonly layouts: [Handle, Handle, Handle, Handle];
}

/** The largest power of two (≤ 256) dividing a device address: the alignment the heuristic must respect. */
export const alignmentOf = (ptr: bigint): number => {
  let a = 1;
  while (a < 256 && ptr % BigInt(a * 2) === 0n) a *= 2;
  return a;
};

export class Cublas {
  private readonly api: CublasLtApi;
  private readonly handle: Handle;
  private readonly one = Float32Array.of(1);
  private readonly zero = Float32Array.of(0);
  private readonly plans = new Map<string, GemmPlan>();

  constructor(readonly path: string) {
    const lib = koffi.load(path);
    const api: Partial<CublasLtApi> = {};
    for (const name of Object.keys(CUBLAS_PROTOTYPES) as (keyof CublasLtApi)[]) api[name] = lib.func(CUBLAS_PROTOTYPES[name]);
    this.api = api as CublasLtApi; // every member was bound above
    const h: Out<Handle> = [null];
    this.check('cublasLtCreate', this.api.cublasLtCreate(h));
    if (h[0] === null) throw new BackendError('cublasLtCreate returned no handle');
    this.handle = h[0];
  }

  /** Needs the device's context current (cuBLASLt uses it). */
  static open(options?: DiscoveryOptions): Cublas {
    return new Cublas(findLibrary('cublasLt', options));
  }

  /**
   * The plan of a GEMM: y = x · wᵀ (+ c) in row-major terms. cuBLAS is column-major, where the same memory
   * reads as yᵀ [outF, rows] = W [outF, inF] (the row-major w read as inF × outF, transposed) · xᵀ [inF, rows];
   * c, when given, has y's layout and type. Keyed by shape, types, operand alignments and workspace.
   */
  plan(g: GemmArgs, workspaceBytes: number): GemmPlan {
    if (g.yDtype !== g.dtype && g.yDtype !== 'f32') throw new BackendError(`cuBLAS GEMM writes ${g.dtype} or f32; asked for ${g.yDtype}`);
    // A batch's later matrices start a stride further: their alignment is the base's and the stride's.
    const elem = (d: FloatDType) => (d === 'f32' ? 4 : 2);
    const strided = (ptr: bigint, stride: number, d: FloatDType) => Math.min(alignmentOf(ptr), alignmentOf(BigInt(stride * elem(d)) || 256n));
    const align = g.batch
      ? [strided(g.w, g.batch.strideW, g.dtype), strided(g.x, g.batch.strideX ?? 0, g.dtype), strided(g.y, g.batch.strideY, g.yDtype), strided(g.y, g.batch.strideY, g.yDtype)]
      : [g.w, g.x, g.c ?? g.y, g.y].map(alignmentOf);
    if (g.batch && g.c !== undefined) throw new BackendError('a batched cuBLAS GEMM adds no C matrix');
    const b = g.batch;
    const key = `${g.dtype}>${g.yDtype} m${g.outF} n${g.rows} k${g.inF} c${g.c === undefined ? 0 : 1} a${align.join('.')} ws${workspaceBytes}${b ? ` b${b.count}.${b.strideW}.${b.strideY}.${b.strideX ?? 0}` : ''}`;
    const known = this.plans.get(key);
    if (known) return known;
    const api = this.api;
    const context = `${g.dtype} → ${g.yDtype}, m ${g.outF}, n ${g.rows}, k ${g.inF}${b ? `, batch ${b.count}` : ''}`;
    const out: Out<Handle> = [null];
    this.check('cublasLtMatmulDescCreate', api.cublasLtMatmulDescCreate(out, CUBLAS.COMPUTE_32F, CUBLAS.R_32F), context);
    const desc = out[0];
    const i32 = (v: number) => Buffer.from(Int32Array.of(v).buffer);
    this.check('cublasLtMatmulDescSetAttribute', api.cublasLtMatmulDescSetAttribute(desc, CUBLAS.DESC_TRANSA, i32(CUBLAS.OP_T), 4), context);
    this.check('cublasLtMatmulDescSetAttribute', api.cublasLtMatmulDescSetAttribute(desc, CUBLAS.DESC_TRANSB, i32(CUBLAS.OP_N), 4), context);
    // A strided batch: w, y (and x, unless its stride is 0: the batch broadcasts it) step by their strides.
    const layout = (type: FloatDType, rows: number, cols: number, stride: number): Handle => {
      this.check('cublasLtMatrixLayoutCreate', api.cublasLtMatrixLayoutCreate(out, DATA_TYPE[type], rows, cols, rows), context);
      if (b) {
        const set = (attr: number, value: Buffer) => this.check('cublasLtMatrixLayoutSetAttribute', api.cublasLtMatrixLayoutSetAttribute(out[0], attr, value, value.length), context);
        set(CUBLAS.LAYOUT_BATCH_COUNT, i32(b.count));
        set(CUBLAS.LAYOUT_STRIDED_BATCH_OFFSET, Buffer.from(BigInt64Array.of(BigInt(stride)).buffer));
      }
      return out[0];
    };
    const [sw, sy, sx] = b ? [b.strideW, b.strideY, b.strideX ?? 0] : [0, 0, 0];
    const layouts: GemmPlan['layouts'] = [layout(g.dtype, g.inF, g.outF, sw), layout(g.dtype, g.inF, g.rows, sx), layout(g.yDtype, g.outF, g.rows, sy), layout(g.yDtype, g.outF, g.rows, sy)];
    // Split-K partial sums in f32 only; should the heuristic offer nothing so, any reduction it likes.
    const algos = this.heuristic(desc, layouts, align, workspaceBytes, true, context);
    if (algos.length === 0) algos.push(...this.heuristic(desc, layouts, align, workspaceBytes, false, context));
    if (algos.length === 0) {
      this.destroy({ desc, layouts });
      throw new BackendError(`cuBLASLt has no algorithm for a GEMM (${context})`, { file: this.path });
    }
    const plan: GemmPlan = { key, algo: algos[0], desc, layouts };
    // Prompt steps of many row counts each make a plan: past MAX_PLANS the oldest goes (a captured graph
    // holds the GEMM's kernels, not its descriptors, so a plan is needed only while a call enqueues).
    if (this.plans.size >= MAX_PLANS) {
      const [oldest] = this.plans.values();
      this.destroy(oldest);
      this.plans.delete(oldest.key);
    }
    this.plans.set(key, plan);
    return plan;
  }

  /** The heuristic's usable algorithms (state ok, workspace within ours), best first. */
  private heuristic(desc: Handle, layouts: GemmPlan['layouts'], align: number[], workspaceBytes: number, f32Reduction: boolean, context: string): Buffer[] {
    const api = this.api;
    const out: Out<Handle> = [null];
    const u32 = (v: number) => Buffer.from(Uint32Array.of(v).buffer);
    this.check('cublasLtMatmulPreferenceCreate', api.cublasLtMatmulPreferenceCreate(out), context);
    const pref = out[0];
    const results = Buffer.alloc(HEURISTIC_BYTES * HEURISTIC_COUNT);
    const returned: Out<number> = [0];
    try {
      const set = (attr: number, value: Buffer) => this.check('cublasLtMatmulPreferenceSetAttribute', api.cublasLtMatmulPreferenceSetAttribute(pref, attr, value, value.length), context);
      set(CUBLAS.PREF_MAX_WORKSPACE_BYTES, Buffer.from(BigUint64Array.of(BigInt(workspaceBytes)).buffer));
      if (f32Reduction) set(CUBLAS.PREF_REDUCTION_SCHEME_MASK, u32(CUBLAS.REDUCTION_COMPUTE_TYPE));
      align.forEach((a, i) => set(CUBLAS.PREF_MIN_ALIGNMENT_A + i, u32(a)));
      const status = api.cublasLtMatmulAlgoGetHeuristic(this.handle, desc, ...layouts, pref, HEURISTIC_COUNT, results, returned);
      if (status !== 0 && f32Reduction) return []; // the caller asks again without the reduction filter
      this.check('cublasLtMatmulAlgoGetHeuristic', status, context);
    } finally {
      api.cublasLtMatmulPreferenceDestroy(pref);
    }
    const algos: Buffer[] = [];
    for (let i = 0; i < returned[0]; i++) {
      const r = results.subarray(i * HEURISTIC_BYTES, (i + 1) * HEURISTIC_BYTES);
      const state = r.readInt32LE(ALGO_BYTES + 8);
      const workspace = Number(r.readBigUInt64LE(ALGO_BYTES));
      if (state === 0 && workspace <= workspaceBytes) algos.push(Buffer.from(r.subarray(0, ALGO_BYTES)));
    }
    return algos;
  }

  /** Enqueues the GEMM of `plan` on the stream. */
  run(stream: Handle, plan: GemmPlan, g: GemmArgs, workspace: bigint, workspaceBytes: number): void {
    const [a, b, c, d] = plan.layouts;
    const beta = g.c === undefined ? this.zero : this.one;
    const status = this.api.cublasLtMatmul(this.handle, plan.desc, this.one, g.w, a, g.x, b, beta, g.c ?? g.y, c, g.y, d, plan.algo, workspace, workspaceBytes, stream);
    this.check('cublasLtMatmul', status, plan.key);
  }

  dispose(): void {
    for (const p of this.plans.values()) this.destroy(p);
    this.plans.clear();
    this.api.cublasLtDestroy(this.handle);
  }

  private destroy(p: Pick<GemmPlan, 'desc' | 'layouts'>): void {
    this.api.cublasLtMatmulDescDestroy(p.desc);
    for (const l of p.layouts) this.api.cublasLtMatrixLayoutDestroy(l);
  }

  private check(call: string, status: number, context?: string): void {
    if (status === 0) return;
    let name: string;
    try {
      name = this.api.cublasLtGetStatusName(status);
    } catch {
      name = `cublasStatus ${status}`;
    }
    throw new BackendError(`cuBLASLt call ${call} failed with ${name} (${status})${context ? ` (${context})` : ''}`, { file: this.path });
  }
}
