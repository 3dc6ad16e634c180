// Where a decode step's time goes: every kernel of one eager (uncaptured) step timed with a pair of CUDA
// events around its launch, then grouped by kernel and shape. For the GEMVs the weight bytes come from
// the launch's own arguments (segment widths × inF × the weight dtype's size), so their achieved GB/s
// can be held against the device's read bandwidth; other kernels report µs. Events bracket only the
// kernel (not the host's launch call), but a step run this way has no graph and no PDL: the gaps between
// kernels are not what a replayed graph pays; the profile is for the kernels' own speed.
import { BackendError, type SampleRow, type StepBatch } from '@zinfer/core';
import type { Ptr } from './driver-api.js';
import type { Dim3, Gpu, KernelArg, LaunchHook } from './gpu.js';
import type { CudaStream } from './stream.js';

export interface KernelTiming {
  kernel: string;
  grid: Dim3;
  block: number;
  us: number;
  /** A GEMV's shape, e.g. '4096→3×4096 norm' (null for other kernels). */
  shape: string | null;
  /** Weight bytes a GEMV reads (null for other kernels). */
  weightBytes: number | null;
}

export interface ProfileRow {
  /** Kernel name with the variant/dtype suffix, and the GEMV shape where there is one. */
  what: string;
  count: number;
  medianUs: number;
  totalUs: number;
  /** GEMVs: weight bytes over the median time. */
  GBps: number | null;
  fractionOfRead: number | null;
}

const EPI_NAMES = ['', ' +residual', ' gated', ' +act', ' push'];
const NORM_NAMES = ['', ' norm', ' layernorm'];

/**
 * Shape and weight bytes of a GEMV launch (gemv.cu's argument order) or of a cuBLAS GEMM (CudaStream's hook
 * passes rows, outF, inF, element bytes), or null for any other kernel.
 */
export function gemvShape(kernel: string, args: readonly KernelArg[]): { shape: string; weightBytes: number } | null {
  if (kernel === 'cublas_gemm') {
    const [rows, outF, inF, bytes] = args.map(Number);
    return { shape: `${inF}→${outF} ×${rows} rows`, weightBytes: outF * inF * bytes };
  }
  const m = /^gemv\d+[a-z]?_(f32|f16|bf16)_/.exec(kernel);
  if (!m) return null;
  const bytes = m[1] === 'f32' ? 4 : 2;
  const widths = [args[3], args[7], args[11]].map(Number).filter((n) => n > 0);
  const [inF, epi, norm] = [Number(args[18]), Number(args[19]), Number(args[21])];
  const out = widths.every((w) => w === widths[0]) && widths.length > 1 ? `${widths.length}×${widths[0]}` : widths.join('+');
  return { shape: `${inF}→${out}${EPI_NAMES[epi] ?? ''}${NORM_NAMES[norm] ?? ''}`, weightBytes: widths.reduce((a, b) => a + b, 0) * inF * bytes };
}

/** Groups timings by kernel and shape, in order of first appearance. */
export function summarizeProfile(timings: readonly KernelTiming[], readGBps: number | null): ProfileRow[] {
  const groups = new Map<string, KernelTiming[]>();
  for (const t of timings) {
    const key = t.shape ? `${t.kernel} ${t.shape}` : t.kernel;
    const g = groups.get(key);
    if (g) g.push(t);
    else groups.set(key, [t]);
  }
  return [...groups].map(([what, ts]) => {
    const us = ts.map((t) => t.us).sort((a, b) => a - b);
    const medianUs = us[Math.floor(us.length / 2)];
    const bytes = ts[0].weightBytes;
    const GBps = bytes === null || !(medianUs > 0) ? null : bytes / (medianUs * 1e3);
    return { what, count: ts.length, medianUs, totalUs: us.reduce((a, b) => a + b, 0), GBps, fractionOfRead: GBps !== null && readGBps ? GBps / readGBps : null };
  });
}

/** A LaunchHook that records a CUDA event before and after every launch (and cuBLAS GEMM) on a CudaStream. */
export class EventProfiler implements LaunchHook {
  private readonly pending: { kernel: string; grid: Dim3; block: number; args: readonly KernelArg[]; start: Ptr; stop: Ptr | null }[] = [];

  constructor(private readonly gpu: Gpu) {
    // By shape rather than instanceof: a bundle may hold more than one copy of the class.
    const s = gpu as Partial<CudaStream>;
    if (!(s.device?.driver && s.stream !== undefined)) throw new BackendError(`kernel profiling needs the CUDA stream, not ${gpu.name}`);
  }

  private get stream(): CudaStream {
    return this.gpu as CudaStream;
  }

  private record(): Ptr {
    const { api } = this.stream.device.driver;
    const e: [Ptr | null] = [null];
    this.stream.device.driver.check('cuEventCreate', api.cuEventCreate(e, 0));
    this.stream.device.driver.check('cuEventRecord', api.cuEventRecord(e[0]!, this.stream.stream));
    return e[0]!;
  }

  before(kernel: string, grid: Dim3, block: number, args: readonly KernelArg[]): void {
    this.pending.push({ kernel, grid: { ...grid }, block, args: [...args], start: this.record(), stop: null });
  }

  after(): void {
    this.pending[this.pending.length - 1].stop = this.record();
  }

  /** Waits for the stream, reads every pair of events, frees them. */
  collect(): KernelTiming[] {
    const { driver } = this.stream.device;
    this.stream.synchronize();
    const out: KernelTiming[] = [];
    for (const p of this.pending.splice(0)) {
      const ms: [number] = [0];
      if (p.stop) driver.check('cuEventElapsedTime', driver.api.cuEventElapsedTime(ms, p.start, p.stop));
      for (const e of [p.start, p.stop]) if (e) driver.api.cuEventDestroy_v2(e);
      const g = gemvShape(p.kernel, p.args);
      out.push({ kernel: p.kernel, grid: p.grid, block: p.block, us: ms[0] * 1000, shape: g?.shape ?? null, weightBytes: g?.weightBytes ?? null });
    }
    return out;
  }
}

/** What profileStep needs of a program (CudaProgram.runObserved). */
export interface ObservableProgram {
  runObserved<H extends LaunchHook>(batch: StepBatch, makeHook: (gpu: Gpu) => H, sample?: readonly SampleRow[]): Promise<H>;
}

/** Every kernel of one eager step of a CUDA program, timed on the device; with `sample`, the sampling kernel too. */
export async function profileStep(program: ObservableProgram, batch: StepBatch, sample?: readonly SampleRow[]): Promise<KernelTiming[]> {
  const hook = await program.runObserved(batch, (gpu) => new EventProfiler(gpu), sample);
  return hook.collect();
}
