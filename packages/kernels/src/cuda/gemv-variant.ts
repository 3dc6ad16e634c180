// Which compiled variant of the decode GEMV (cuda/gemv.cu) linear layers launch. The variants give
// bit-identical results and differ only in how many weight loads each thread keeps in flight and how many
// blocks an SM holds, so the device bench times them against each other in one run (ZINFER_GEMV, or
// setGemvVariant between steps; a program with CUDA graphs must drop them to see a change: resetGraphs).
import { BackendError } from '@zinfer/core';
import { EnvChoice, parseChoice } from './env-choice.js';

/**
 * v1: 4 loads a row, reissued per round; roll: reissued per slot; occ: roll, 2 loads, 4 blocks an SM; stage:
 * roll with the slots in shared memory filled by cp.async (80 registers instead of 167: 6 blocks an SM);
 * auto (the default): one of v1 / roll / occ per launch, by autoGemvVariant. On an H100 (2026-11-28,
 * graphed Llama-2-7B-shape batch-1 decode) roll 5.062 ms, v1 5.183, occ 5.323; a persistent grid looping
 * over the tiles measured 5.584 and was dropped; stage measured slower than roll on an H200 (PERF-NOTES.md).
 */
export const GEMV_VARIANTS = ['v1', 'roll', 'occ', 'stage', 'auto'] as const;
export type GemvVariant = (typeof GEMV_VARIANTS)[number];
/** The variants with their own entry points (auto picks one of them per launch). */
export const GEMV_KERNEL_VARIANTS = ['v1', 'roll', 'occ', 'stage'] as const;
export type GemvKernelVariant = (typeof GEMV_KERNEL_VARIANTS)[number];

/** The entry-point infix of each variant: gemv1_f16_f16, gemv1r_f16_f16, gemv1o_f16_f16, gemv1s_f16_f16. */
const INFIX: Record<GemvKernelVariant, string> = { v1: '', roll: 'r', occ: 'o', stage: 's' };

const variant = new EnvChoice(GEMV_VARIANTS, 'auto', 'ZINFER_GEMV');
/** The variant named by an environment value (unset or empty: auto). */
export const parseGemvVariant = (value: string | undefined, field?: string): GemvVariant => variant.parse(value, field);
export const gemvVariant = (): GemvVariant => variant.get();
/** Selects the variant later launches use (the bench's A/B; tests). */
export const setGemvVariant = (v: GemvVariant): void => variant.set(v);

/**
 * The entry point of the GEMV for `rowsVariant` rows (1, 2, 4 or 8) in the given dtypes. The variants are
 * compiled for 1 and 2 rows in the 16-bit modes (weights in the activation dtype); everything else is v1.
 */
export function gemvKernel(rowsVariant: number, weight: string, act: string, v: GemvKernelVariant): string {
  const has = rowsVariant <= 2 && act !== 'f32' && weight === act;
  return `gemv${rowsVariant}${has ? INFIX[v] : ''}_${weight}_${act}`;
}

/** The epilogue of a fused GEMV (EPI in linear-launch.ts): q|k|v and heads are 'none', o and down 'residual'. */
export type GemvEpilogue = 'none' | 'residual' | 'gated' | 'act';
const EPILOGUES: readonly GemvEpilogue[] = ['none', 'residual', 'gated', 'act'];

/**
 * Per-epilogue overrides of the variant, e.g. `residual:occ,gated:roll` (ZINFER_GEMV_BY_EPILOGUE, or
 * setGemvVariantByEpilogue): the variants are bit-identical, so the bench can search which suits which
 * GEMV on a card (their best differs with the grid and the row length). Unlisted epilogues take the variant.
 */
export function parseGemvByEpilogue(value: string | undefined, field = 'ZINFER_GEMV_BY_EPILOGUE'): Partial<Record<GemvEpilogue, GemvVariant>> {
  const out: Partial<Record<GemvEpilogue, GemvVariant>> = {};
  for (const item of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const [e, v] = item.split(':');
    const epilogue = parseChoice(e, EPILOGUES, 'none', `${field} (epilogue of '${item}')`);
    if (!v) throw new BackendError(`${field}: '${item}' names no variant (epilogue:variant)`, { field, expected: 'epilogue:variant', found: item });
    out[epilogue] = variant.parse(v, `${field} (variant of '${item}')`);
  }
  return out;
}
let byEpilogue = parseGemvByEpilogue(process.env.ZINFER_GEMV_BY_EPILOGUE);
export const gemvVariantByEpilogue = (): Partial<Record<GemvEpilogue, GemvVariant>> => ({ ...byEpilogue });
export const setGemvVariantByEpilogue = (map: Partial<Record<GemvEpilogue, GemvVariant>>): void => {
  byEpilogue = parseGemvByEpilogue(Object.entries(map).map(([e, v]) => `${e}:${v}`).join(','), 'setGemvVariantByEpilogue');
};

/**
 * The auto rule, fitted on an NVIDIA H200 (graphed batch-1 decode of Llama shapes from 7B to a 70B tp-4 rank,
 * every assignment of v1 / roll / occ to the three kinds of GEMV: bench/results/gemv-mix-h200.json):
 *   - residual GEMVs (o, down: a few thousand outputs, 1–3 waves of blocks) take occ, whose 4 blocks an SM
 *     cut the waves: best on every shape;
 *   - the others by `perThread`, the 16-byte vectors of a weight row each of the 128 threads loads: roll
 *     when that is exactly its 4 slots (rows of 4,096 at 16 bits: one full round), v1 for gated GEMVs of 8
 *     or more (8,192-wide rows), else occ (5,120-wide rows: roll's second round of 1 vector is a latency
 *     trip with little in flight).
 */
export function autoGemvVariant(epilogue: GemvEpilogue, perThread: number): GemvKernelVariant {
  if (epilogue === 'residual') return 'occ';
  if (perThread === 4) return 'roll';
  return epilogue === 'gated' && perThread >= 8 ? 'v1' : 'occ';
}

/**
 * Whether GEMVs stage their inputs (the rows of x, the norm's weights) in shared memory (cuda/gemv.cu):
 * 'off' (the default) or 'on' (ZINFER_GEMV_STAGE_X, or setGemvStageX between steps, then resetGraphs).
 * Bit-identical either way; off, each 16-byte vector of x is its own L2 trip inside the dot-product loop.
 * On an H200 (graphed batch-1 decode, session 7) on/off measured 4.284/4.328 ms (7B), 8.345/8.332 (13B),
 * 2.985/3.014 (13B tp-4 rank), 11.315/11.129 (70B tp-4 rank): within the noise, so off stays the default.
 */
export const GEMV_STAGE_X_MODES = ['on', 'off'] as const;
export type GemvStageXMode = (typeof GEMV_STAGE_X_MODES)[number];
const stageX = new EnvChoice(GEMV_STAGE_X_MODES, 'off', 'ZINFER_GEMV_STAGE_X');
export const gemvStageX = (): GemvStageXMode => stageX.get();
export const setGemvStageX = (mode: GemvStageXMode): void => stageX.set(mode);

/**
 * Narrow rows: inputs of at most GEMV_WARP_MAX_IN elements (GPT-2's 768, its LM head included) in the 16-bit
 * modes at 1–2 rows take the one-warp GEMV (gemv1w_*, gemv2w_*: cuda/gemv.cu) under 'warp' (the default),
 * the 128-thread one under 'block'. ZINFER_GEMV_NARROW, or setGemvNarrow between steps (then resetGraphs).
 */
export const GEMV_WARP_MAX_IN = 1024;
export const GEMV_NARROW_MODES = ['warp', 'block'] as const;
export type GemvNarrowMode = (typeof GEMV_NARROW_MODES)[number];

const narrow = new EnvChoice(GEMV_NARROW_MODES, 'warp', 'ZINFER_GEMV_NARROW');
export const parseGemvNarrow = (value: string | undefined, field?: string): GemvNarrowMode => narrow.parse(value, field);
export const gemvNarrow = (): GemvNarrowMode => narrow.get();
export const setGemvNarrow = (mode: GemvNarrowMode): void => narrow.set(mode);

/**
 * Dynamic shared memory a GEMV entry point may take for its staged inputs: a block's shared memory stays
 * within 48 KiB (no opt-in), and the entry points hold up to ~1.2 KiB statically (the reduction), `stage`
 * variants ~34 KiB (their load slots).
 */
const STAGED_LIMIT = { plain: 46 * 1024, stage: 12 * 1024 } as const;

/**
 * The GEMV entry point and block size for a launch of `rows` rows over `inF` inputs with `epilogue`, and
 * the most dynamic shared memory it may be given (stagedLimit).
 */
export function gemvLaunch(rows: number, weight: string, act: string, inF: number, epilogue: GemvEpilogue = 'none'): { kernel: string; threads: number; stagedLimit: number } {
  const rv = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
  if (narrow.get() === 'warp' && rv <= 2 && inF <= GEMV_WARP_MAX_IN && act !== 'f32' && weight === act) return { kernel: `gemv${rv}w_${weight}_${act}`, threads: 32, stagedLimit: STAGED_LIMIT.plain };
  const v = byEpilogue[epilogue] ?? variant.get();
  const kv = v === 'auto' ? autoGemvVariant(epilogue, Math.ceil(inF / 8 / 128)) : v;
  return { kernel: gemvKernel(rv, weight, act, kv), threads: 128, stagedLimit: kv === 'stage' ? STAGED_LIMIT.stage : STAGED_LIMIT.plain };
}
