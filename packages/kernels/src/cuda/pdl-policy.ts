// Which steps launch their kernels with programmatic dependent launch (PDL: a kernel starts while the one
// before it drains and waits only before it reads that kernel's output). It pays in the latency-bound
// GEMV steps (H200, graphed 7B batch 1: 4.22 ms with it, 4.36 without). Whether it pays in batch steps is
// what ZINFER_PDL_STEPS (or setPdlPolicy between steps, then resetGraphs) lets the bench time:
// 'all' every step, 'gemv' only steps of at most GEMV_MAX_ROWS rows.
import { EnvChoice } from './env-choice.js';
import { GEMV_MAX_ROWS } from './linear-launch.js';

export const PDL_POLICIES = ['all', 'gemv'] as const;
export type PdlPolicy = (typeof PDL_POLICIES)[number];
const policy = new EnvChoice(PDL_POLICIES, 'all', 'ZINFER_PDL_STEPS');
export const pdlPolicy = (): PdlPolicy => policy.get();
export const setPdlPolicy = (p: PdlPolicy): void => policy.set(p);

/** Whether a step of `rows` rows launches with PDL (where the stream has it at all). */
export const pdlForRows = (rows: number): boolean => policy.get() === 'all' || rows <= GEMV_MAX_ROWS;
