// The graphed decode step's timeline, for finding where its time goes between kernels (a diagnostic: the
// eager profile times each kernel alone, but a replayed graph overlaps them through programmatic
// dependent launch, so their sum is not the step). With ZINFER_CUDA_TRACE=1 the kernels are built with
// -DZINFER_TRACE (their own cubins in the cache: the option is part of the key) and thread 0 of block
// (0,0,0) of every kernel that waits on the one before it records, in one device buffer, when it reached
// griddepcontrol.wait and when the wait let it go (common.cuh). In a chain of kernels each waiting on the
// last, a kernel's release comes when the one before it has finished, so release-to-release is what each
// kernel adds to the step, and reached-before-release says it was resident early (its weights in flight).
// TRACE_MARK(tag) points inside a kernel record the time block 0 passed them, placed after its release.
import { BackendError } from '@zinfer/core';
import type { Ptr } from './driver-api.js';
import type { CudaDriver } from './driver.js';

/** Whether this process builds and records the trace (ZINFER_CUDA_TRACE=1). */
export const traceBuild = (env: Readonly<Record<string, string | undefined>> = process.env): boolean => env.ZINFER_CUDA_TRACE === '1';

export interface TraceRecord {
  /** %globaltimer (ns) when block 0 reached griddepcontrol.wait, and when the wait returned. */
  reachedNs: number;
  releasedNs: number;
  grid: [number, number, number];
  block: number;
}

/** Records the buffer holds (32 bytes each): ~300 kernels a step × 200 steps. */
const CAPACITY = 65536;
const RECORD_WORDS = 4;

/** One device's trace buffer, shared by every module's zinfer_trace. */
export class KernelTrace {
  private constructor(private readonly driver: CudaDriver, private readonly records: Ptr, private readonly cursor: Ptr) {}

  /** Allocates the buffer and points each module's zinfer_trace at it (the context must be current). */
  static attach(driver: CudaDriver, modules: readonly Ptr[]): KernelTrace {
    const { api } = driver;
    const getGlobal = api.cuModuleGetGlobal_v2;
    if (!getGlobal) throw new BackendError('ZINFER_CUDA_TRACE=1 needs cuModuleGetGlobal_v2, which this driver does not export');
    const alloc = (bytes: number, what: string): Ptr => {
      const p: [number | bigint] = [0];
      driver.check('cuMemAllocAsync', api.cuMemAllocAsync(p, bytes, null), what);
      return BigInt(p[0]);
    };
    const records = alloc(CAPACITY * RECORD_WORDS * 8, 'kernel trace records');
    const cursor = alloc(256, 'kernel trace cursor');
    // TraceSink: records (8 bytes), cursor (8), capacity (4), padding (4).
    const sink = new BigUint64Array([records, cursor, BigInt(CAPACITY)]);
    for (const m of modules) {
      const [ptr, bytes]: [[number | bigint], [number]] = [[0], [0]];
      driver.check('cuModuleGetGlobal_v2', getGlobal(ptr, bytes, m, 'zinfer_trace'), 'zinfer_trace (a module built without -DZINFER_TRACE?)');
      if (Number(bytes[0]) !== 24) throw new BackendError(`zinfer_trace is ${bytes[0]} bytes in a module, not the 24 of TraceSink`);
      driver.check('cuMemcpyHtoDAsync_v2', api.cuMemcpyHtoDAsync_v2(BigInt(ptr[0]), sink, 24, null));
    }
    const trace = new KernelTrace(driver, records, cursor);
    trace.reset();
    return trace;
  }

  /** Forgets every record (synchronizes the device first: nothing in flight may still write). */
  reset(): void {
    const { api } = this.driver;
    this.driver.check('cuCtxSynchronize', api.cuCtxSynchronize());
    this.driver.check('cuMemsetD32Async', api.cuMemsetD32Async(this.cursor, 0, 1, null));
    this.driver.check('cuCtxSynchronize', api.cuCtxSynchronize());
  }

  /** The records since the last reset, in the order they were appended (synchronizes the device). */
  read(): TraceRecord[] {
    const { api } = this.driver;
    this.driver.check('cuCtxSynchronize', api.cuCtxSynchronize());
    const n = new Uint32Array(1);
    this.driver.check('cuMemcpyDtoHAsync_v2', api.cuMemcpyDtoHAsync_v2(n, this.cursor, 4, null));
    this.driver.check('cuCtxSynchronize', api.cuCtxSynchronize());
    const count = Math.min(n[0], CAPACITY);
    const words = new BigUint64Array(count * RECORD_WORDS);
    if (count > 0) {
      this.driver.check('cuMemcpyDtoHAsync_v2', api.cuMemcpyDtoHAsync_v2(words, this.records, words.byteLength, null));
      this.driver.check('cuCtxSynchronize', api.cuCtxSynchronize());
    }
    return decodeRecords(words);
  }
}

const LOW = 0xffffffffn;

/** The records of a buffer of [n][4] u64 words (reached, released, gx | gy << 32, gz | block << 32). */
export function decodeRecords(words: BigUint64Array): TraceRecord[] {
  const out: TraceRecord[] = [];
  for (let i = 0; i + RECORD_WORDS <= words.length; i += RECORD_WORDS) {
    const [reached, released, xy, zb] = [words[i], words[i + 1], words[i + 2], words[i + 3]];
    out.push({ reachedNs: Number(reached), releasedNs: Number(released), grid: [Number(xy & LOW), Number(xy >> 32n), Number(zb & LOW)], block: Number(zb >> 32n) });
  }
  return out;
}

export interface TraceRow {
  /** A launch's name (from the eager profile of the same step), or its grid when unnamed. */
  what: string;
  count: number;
  /** Median µs from this kernel's release to the next one's: what it adds to the step. */
  addsMedianUs: number;
  addsTotalUs: number;
  /** Median µs block 0 spent resident before its release (> 0: launched early under PDL). */
  earlyMedianUs: number;
}

/** A TRACE_MARK inside a kernel: when block 0 passed it, after that kernel's release. */
export interface TraceMark {
  what: string;
  tag: number;
  count: number;
  /** Median µs from the kernel's release to the mark. */
  afterReleaseMedianUs: number;
}

export interface TraceSummary {
  steps: number;
  kernelsPerStep: number;
  /** First release to last release of a step, median over steps (µs). */
  stepUs: number;
  rows: TraceRow[];
  marks: TraceMark[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : 0;
};

/**
 * Splits the records of `steps` replays of one graph (each kernel of a step records once) into steps by
 * release order and attributes each kernel the time to the next kernel's release (the last kernel of a
 * step: none; its end is not recorded). `names`: the step's kernels in launch order (the eager profile's),
 * used when their count matches the records of a step; else kernels are named by grid and block.
 */
export function summarizeTrace(all: readonly TraceRecord[], steps: number, names: readonly string[] | null = null): TraceSummary {
  const records = all.filter((r) => r.block > 0); // block 0: a TRACE_MARK (grid[0] its tag)
  if (!(steps >= 1) || records.length % steps !== 0) {
    throw new BackendError(`kernel trace: ${records.length} records do not split into ${steps} steps (a kernel that records twice or not at all?)`);
  }
  const per = records.length / steps;
  const sorted = [...records].sort((a, b) => a.releasedNs - b.releasedNs);
  const useNames = names !== null && names.length === per;
  const byWhat = new Map<string, { adds: number[]; early: number[] }>();
  const stepUs: number[] = [];
  for (let s = 0; s < steps; s++) {
    const step = sorted.slice(s * per, (s + 1) * per);
    stepUs.push((step[per - 1].releasedNs - step[0].releasedNs) / 1e3);
    for (let i = 0; i < per - 1; i++) {
      const r = step[i];
      const what = useNames ? names[i] : `grid ${r.grid.join('×')} block ${r.block}`;
      const g = byWhat.get(what) ?? { adds: [], early: [] };
      g.adds.push((step[i + 1].releasedNs - r.releasedNs) / 1e3);
      g.early.push((r.releasedNs - r.reachedNs) / 1e3);
      byWhat.set(what, g);
    }
  }
  const rows = [...byWhat].map(([what, g]) => ({ what, count: g.adds.length / steps, addsMedianUs: median(g.adds), addsTotalUs: g.adds.reduce((a, b) => a + b, 0) / steps, earlyMedianUs: median(g.early) }));
  return { steps, kernelsPerStep: per, stepUs: median(stepUs), rows, marks: placeMarks(all.filter((r) => r.block === 0), sorted, per, useNames ? names : null, steps) };
}

/** Each mark against the last kernel released before it (the kernel it sits in: kernels of a step run in a chain). */
function placeMarks(marks: readonly TraceRecord[], kernels: readonly TraceRecord[], per: number, names: readonly string[] | null, steps: number): TraceMark[] {
  const byKey = new Map<string, { what: string; tag: number; offsets: number[] }>();
  for (const m of marks) {
    let lo = 0;
    let hi = kernels.length - 1;
    if (hi < 0 || kernels[0].releasedNs > m.reachedNs) continue;
    while (lo < hi) { // the last kernel released at or before the mark
      const mid = (lo + hi + 1) >> 1;
      if (kernels[mid].releasedNs <= m.reachedNs) lo = mid;
      else hi = mid - 1;
    }
    const k = kernels[lo];
    const what = names ? names[lo % per] : `grid ${k.grid.join('×')} block ${k.block}`;
    const tag = m.grid[0];
    const key = `${what} #${tag}`;
    const g = byKey.get(key) ?? { what, tag, offsets: [] };
    g.offsets.push((m.reachedNs - k.releasedNs) / 1e3);
    byKey.set(key, g);
  }
  return [...byKey.values()].map((g) => ({ what: g.what, tag: g.tag, count: g.offsets.length / steps, afterReleaseMedianUs: median(g.offsets) }));
}
