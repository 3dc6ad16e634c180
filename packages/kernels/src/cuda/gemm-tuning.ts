// The cuBLASLt GEMMs of one stream: their workspace, and the algorithm each shape runs. The heuristic's first
// pick is made for large problems; at decode batch sizes (a few dozen rows) a 4096 × 4096 product under its
// first pick used a fraction of the SMs (49% of the H200's read bandwidth at 64 rows). So the first eager
// call of a shape of at most GEMM_TUNE_MAX_ROWS rows times every candidate the heuristic returned (into a
// scratch output, so an in-place or residual GEMM is not applied twice) and keeps the fastest; calls while a
// graph is captured never time (they take the plan's choice so far). Prompt-sized shapes keep the first pick:
// each new row count would be a new shape to time. ZINFER_GEMM_TUNE=off keeps the first pick everywhere.
import type { CudaDevice } from './device.js';
import type { Ptr } from './driver-api.js';
import { EnvChoice } from './env-choice.js';
import type { GemmArgs } from './gpu.js';
import type { Cublas, GemmPlan } from './cublas.js';

/** Rows up to which a GEMM shape's algorithm is chosen by timing (decode batches). */
export const GEMM_TUNE_MAX_ROWS = 256;
/** Workspace a stream gives cuBLASLt (split-K algorithms keep partial sums there). */
export const GEMM_WORKSPACE_BYTES = 32 << 20;
/** Timed calls of each candidate (after one warm-up call). */
const TUNE_REPEATS = 5;

const tuning = new EnvChoice(['on', 'off'] as const, 'on', 'ZINFER_GEMM_TUNE');
/** Bumped by setGemmTuning: every plan decides again at its next eager call (the bench's A/B). */
let generation = 0;
export const gemmTuning = (): 'on' | 'off' => tuning.get();
export const setGemmTuning = (v: 'on' | 'off'): void => {
  tuning.set(v);
  generation++;
};

/** What a StreamGemm needs of its stream. */
export interface GemmStream {
  readonly stream: Ptr;
  readonly capturing: boolean;
  /** Bytes of L2: each timed call follows a write of twice as much, so its weights come from DRAM as in a step. */
  readonly l2Bytes: number;
  alloc(bytes: number, what: string): bigint;
  free(ptr: bigint): void;
  fill32(dst: bigint, value: number, count: number): void;
  synchronize(): void;
}

export class StreamGemm {
  private workspace: { ptr: bigint; bytes: number } | null = null;
  private events: [Ptr, Ptr] | null = null;

  constructor(
    private readonly device: CudaDevice,
    private readonly s: GemmStream,
  ) {}

  run(g: GemmArgs): void {
    const lib = this.device.gemmLibrary();
    // The workspace is allocated at the first call outside a capture (a captured allocation would belong to
    // the graph); a shape first seen while capturing plans without one.
    if (!this.workspace && !this.s.capturing) this.workspace = { ptr: this.s.alloc(GEMM_WORKSPACE_BYTES, 'cuBLASLt workspace'), bytes: GEMM_WORKSPACE_BYTES };
    const ws = this.workspace ?? { ptr: 0n, bytes: 0 };
    const plan = lib.plan(g, ws.bytes, tuning.get() === 'on' && g.rows <= GEMM_TUNE_MAX_ROWS);
    if (plan.decidedAt !== generation && !this.s.capturing) {
      plan.chosen = 0;
      if (tuning.get() === 'on' && g.rows <= GEMM_TUNE_MAX_ROWS && plan.algos.length > 1) this.tune(lib, plan, g, ws);
      plan.decidedAt = generation;
    }
    lib.run(this.s.stream, plan, g, ws.ptr, ws.bytes);
  }

  /**
   * Times each candidate of `plan` on a scratch output and keeps the fastest (median of TUNE_REPEATS calls).
   * Each timed call runs after L2 was overwritten: a step reads each weight once, from DRAM, while repeated
   * calls would find a weight of up to the L2's size (50 MB on an H200) in L2 and rank the algorithms by
   * their L2 speed.
   */
  private tune(lib: Cublas, plan: GemmPlan, g: GemmArgs, ws: { ptr: bigint; bytes: number }): void {
    const { api } = this.device.driver;
    const check = (call: string, status: number) => this.device.driver.check(call, status);
    const [start, stop] = (this.events ??= [this.event(), this.event()]);
    const scratch = this.s.alloc(g.rows * g.outF * (g.yDtype === 'f32' ? 4 : 2), 'GEMM tuning output');
    const flushWords = Math.ceil((2 * this.s.l2Bytes) / 4);
    const flush = this.s.alloc(4 * flushWords, 'GEMM tuning L2 flush');
    const trial = { ...g, y: scratch };
    const stream = this.s.stream;
    try {
      let best = Infinity;
      plan.timesMs = plan.algos.map((_, i) => {
        lib.run(stream, plan, trial, ws.ptr, ws.bytes, i);
        const samples: number[] = [];
        for (let r = 0; r < TUNE_REPEATS; r++) {
          this.s.fill32(flush, r, flushWords);
          check('cuEventRecord', api.cuEventRecord(start, stream));
          lib.run(stream, plan, trial, ws.ptr, ws.bytes, i);
          check('cuEventRecord', api.cuEventRecord(stop, stream));
          check('cuEventSynchronize', api.cuEventSynchronize(stop));
          const ms: [number] = [0];
          check('cuEventElapsedTime', api.cuEventElapsedTime(ms, start, stop));
          samples.push(ms[0]);
        }
        const ms = samples.sort((a, b) => a - b)[TUNE_REPEATS >> 1];
        if (ms < best) {
          best = ms;
          plan.chosen = i;
        }
        return ms;
      });
    } finally {
      this.s.free(flush);
      this.s.free(scratch);
    }
  }

  private event(): Ptr {
    const e: [Ptr | null] = [null];
    this.device.driver.check('cuEventCreate', this.device.driver.api.cuEventCreate(e, 0));
    return e[0]!;
  }

  /** Frees the workspace (stream-ordered) and the timing events. */
  dispose(): void {
    if (this.workspace) this.s.free(this.workspace.ptr);
    this.workspace = null;
    if (this.events) for (const e of this.events) this.device.driver.api.cuEventDestroy_v2(e);
    this.events = null;
  }
}
