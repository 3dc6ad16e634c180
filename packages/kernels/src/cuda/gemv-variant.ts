// Which compiled variant of the decode GEMV (cuda/gemv.cu) linear layers launch. The variants give
// bit-identical results and differ only in how many weight loads each thread keeps in flight and how many
// blocks an SM holds, so the device bench times them against each other in one run (ZINFER_GEMV, or
// setGemvVariant between steps; a program with CUDA graphs must drop them to see a change: resetGraphs).
import { EnvChoice } from './env-choice.js';

/**
 * v1: 4 loads a row, reissued per round; roll: reissued per slot; occ: roll, 2 loads, 4 blocks an SM;
 * persist: roll in a persistent grid (3 blocks an SM in f16, 2 in bf16) whose blocks loop over the 4-row tiles, each
 * issuing its next tile's loads while it reduces and stores the current one.
 */
export const GEMV_VARIANTS = ['v1', 'roll', 'occ', 'persist'] as const;
export type GemvVariant = (typeof GEMV_VARIANTS)[number];

/** The entry-point infix of each variant: gemv1_f16_f16, gemv1r_f16_f16, gemv1o_f16_f16, gemv1p_f16_f16. */
const INFIX: Record<GemvVariant, string> = { v1: '', roll: 'r', occ: 'o', persist: 'p' };

/** Blocks an SM holds of the persistent entry points, by weight dtype (their __launch_bounds__ in cuda/gemv.cu). */
export const GEMV_PERSIST_BLOCKS_PER_SM: Readonly<Record<string, number>> = { f16: 3, bf16: 2 };

/** The grid of a persistent GEMV of `tiles` 4-row tiles: as many blocks as the GPU holds at once, at most one a tile. */
export const persistentGrid = (tiles: number, weight: string, multiprocessors: number): number =>
  Math.max(1, Math.min(tiles, (GEMV_PERSIST_BLOCKS_PER_SM[weight] ?? 2) * multiprocessors));

const variant = new EnvChoice(GEMV_VARIANTS, 'v1', 'ZINFER_GEMV');
/** The variant named by an environment value (unset or empty: v1). */
export const parseGemvVariant = (value: string | undefined, field?: string): GemvVariant => variant.parse(value, field);
export const gemvVariant = (): GemvVariant => variant.get();
/** Selects the variant later launches use (the bench's A/B; tests). */
export const setGemvVariant = (v: GemvVariant): void => variant.set(v);

/**
 * The entry point of the GEMV for `rowsVariant` rows (1, 2, 4 or 8) in the given dtypes. The variants are
 * compiled for 1 and 2 rows in the 16-bit modes (weights in the activation dtype); everything else is v1.
 */
export function gemvKernel(rowsVariant: number, weight: string, act: string, v: GemvVariant = variant.get()): string {
  const has = rowsVariant <= 2 && act !== 'f32' && weight === act;
  return `gemv${rowsVariant}${has ? INFIX[v] : ''}_${weight}_${act}`;
}

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
 * The GEMV entry point and block size for a launch of `rows` rows over `inF` inputs, and whether its
 * blocks loop over tiles (then a grid of at most GEMV_PERSIST_BLOCKS_PER_SM blocks an SM covers every tile).
 */
export function gemvLaunch(rows: number, weight: string, act: string, inF: number): { kernel: string; threads: number; persistent: boolean } {
  const rv = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
  if (narrow.get() === 'warp' && rv <= 2 && inF <= GEMV_WARP_MAX_IN && act !== 'f32' && weight === act) return { kernel: `gemv${rv}w_${weight}_${act}`, threads: 32, persistent: false };
  const kernel = gemvKernel(rv, weight, act);
  return { kernel, threads: 128, persistent: /^gemv\dp_/.test(kernel) };
}
