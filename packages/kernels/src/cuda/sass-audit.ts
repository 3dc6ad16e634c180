// Whether the kernels that issue loads before griddepcontrol.wait still do so in the compiled code. Under PDL
// a kernel starts while the one before it drains, and what it loads before its wait is what it gets done
// meanwhile: a GEMV's first round of weights, the decode attention's step metadata (and, pipelined, its first
// K/V round), a router's weights, the MoE down kernel's first expert. ptxas (CUDA 13) once moved every GEMV's
// loads behind the wait, which cost the graphed 7B step 6% on an H200 while every test passed (PERF-NOTES,
// session 19). This reads a `cuobjdump -sass` listing of the cubins: scripts/gpu-check.mjs (part sass) runs it
// on the GPU machine, whose CUDA toolkit has cuobjdump.

/** A kernel's global loads in program order, counted before each wait (ACQBULK: griddepcontrol.wait). */
export interface WaitLoads {
  /** All global loads (LDG) since the previous wait or the kernel's start, one count per wait. */
  loads: number[];
  /** Of those, the weight stream's (LDG.E.NA: ld.global.nc.L1::no_allocate, cuda/common.cuh ld_stream16). */
  stream: number[];
  /** Non-coherent loads (LDG….CONSTANT: ld.global.nc, __ldg) anywhere in the kernel, waits or not. */
  nc: number;
}

/** Per kernel of a listing that waits at least once: its loads before each wait. */
export function loadsBeforeWaits(listing: string): Map<string, WaitLoads> {
  const out = new Map<string, WaitLoads>();
  let cur: WaitLoads | null = null;
  let loads = 0;
  let stream = 0;
  for (const line of listing.split('\n')) {
    const fn = /Function : (\S+)/.exec(line);
    if (fn) {
      cur = { loads: [], stream: [], nc: 0 };
      out.set(fn[1], cur);
      loads = stream = 0;
    } else if (cur && /\bACQBULK\b/.test(line)) {
      cur.loads.push(loads);
      cur.stream.push(stream);
      loads = stream = 0;
    } else if (cur && /\bLDG\./.test(line)) {
      loads++;
      if (/\bLDG\.E\.NA\./.test(line)) stream++;
      if (/\bLDG\.\S*\bCONSTANT\b/.test(line)) cur.nc++;
    }
  }
  for (const [name, w] of out) if (w.loads.length === 0) out.delete(name);
  return out;
}

/**
 * What a kernel must load before a wait: `stream` weight loads before some wait, or `first` loads before its
 * first; or, `coherent`, that it has no non-coherent load at all (a kernel that reads only what the kernel before
 * it wrote: an ld.global.nc of that may be issued before its wait, common.cuh ld_act16 says why).
 */
export interface PreWaitRule {
  kernels: RegExp;
  stream?: number;
  first?: number;
  coherent?: true;
  what: string;
}

export const PRE_WAIT_RULES: readonly PreWaitRule[] = [
  // Every FMA GEMV entry has a scalar path whose wait comes first in program order, so the vector path's round
  // is "some wait": occ's is 2 loads × 4 rows, the others' 4 × 4 or 2 × 8; mma's (gemv8m_) U chunks × 2 rows.
  { kernels: /^gemv\d+[droewm]?_/, stream: 8, what: 'its first round of weights' },
  { kernels: /^attn_decode\d/, first: 1, what: "the step's metadata and (pipelined) its first K/V round" },
  { kernels: /^moe_router/, first: 1, what: "the router's (and its norm's) weights" },
  { kernels: /^moe_down\d/, first: 1, what: "the first expert's weights" },
  { kernels: /^embedding_sum_/, first: 1, what: 'its rows of both tables' },
  // No weights: every input is the kernel before's output (moe_combine's expert table and bias_add's bias
  // are read by plain loads, which stay coherent).
  { kernels: /^(activation|add|bias_add|gather_rows|to_f32|moe_dense_act|moe_combine|sigmoid_gate)_/, coherent: true, what: 'activations only' },
];

/** The kernels of a listing that break PRE_WAIT_RULES, each with what it no longer loads early. */
export function preWaitViolations(listing: string): { kernels: number; violations: string[] } {
  const waits = loadsBeforeWaits(listing);
  const violations: string[] = [];
  let kernels = 0;
  for (const [name, w] of waits) {
    const rule = PRE_WAIT_RULES.find((r) => r.kernels.test(name));
    if (!rule) continue;
    kernels++;
    if (rule.stream !== undefined && !w.stream.some((n) => n >= rule.stream!)) {
      violations.push(`${name}: no wait has ${rule.stream} weight loads before it (${rule.what}; counts ${w.stream.join('|')})`);
    }
    if (rule.first !== undefined && w.loads[0] < rule.first) violations.push(`${name}: nothing loaded before its first wait (${rule.what})`);
    if (rule.coherent && w.nc > 0) violations.push(`${name}: ${w.nc} non-coherent loads (${rule.what}: ld.global.nc may run before the wait)`);
  }
  return { kernels, violations };
}
