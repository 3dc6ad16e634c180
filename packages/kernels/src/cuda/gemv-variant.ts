// Which compiled variant of the decode GEMV (cuda/gemv.cu) linear layers launch. The FMA variants give
// bit-identical results and differ only in how many weight loads each thread keeps in flight and how many
// blocks an SM holds, so the device bench times them against each other in one run (ZINFER_GEMV, or
// setGemvVariant between steps; a program with CUDA graphs must drop them to see a change: resetGraphs).
// mma (2–8 rows, the tensor cores) adds in another order: equal within rounding, not bit for bit.
import { BackendError } from '@zinfer/core';
import { EnvChoice } from './env-choice.js';

/**
 * v1: 4 loads a row, reissued per round; roll: reissued per slot; occ: roll, 2 loads, 4 blocks an SM; dense: v1
 * at 4 blocks an SM; eight: 8 weight rows a block, 2 loads a row, 4 blocks an SM; mma: mma.sync over 16 weight rows
 * a block, the batch's rows its 8 columns (2–8 rows in the 16-bit modes); auto (the default): one of them
 * per launch, by autoGemvVariant. On an H100 (2026-11-28, graphed Llama-2-7B-shape batch-1 decode) roll
 * 5.062 ms, v1 5.183, occ 5.323. Dropped after measuring (PERF-NOTES.md): a
 * persistent grid looping over the tiles (H100: slower), roll with its slots in shared memory filled by
 * cp.async, 6 blocks an SM (H200: slower), and inputs staged in shared memory (H200: equal, and its branch
 * cost registers in every GEMV).
 */
export const GEMV_VARIANTS = ['v1', 'roll', 'occ', 'dense', 'eight', 'mma', 'auto'] as const;
export type GemvVariant = (typeof GEMV_VARIANTS)[number];
/** The variants with their own entry points (auto picks one of them per launch). */
export const GEMV_KERNEL_VARIANTS = ['v1', 'roll', 'occ', 'dense', 'eight', 'mma'] as const;
/** The variants whose sums are added in v1's order (the same bits as v1). */
export const GEMV_BIT_IDENTICAL_VARIANTS = ['v1', 'roll', 'occ', 'dense', 'eight'] as const;
export type GemvKernelVariant = (typeof GEMV_KERNEL_VARIANTS)[number];

/** The entry-point infix of each variant: gemv1_f16_f16, gemv1r_f16_f16, gemv1o_f16_f16, gemv1d_f16_f16, gemv1e_f16_f16, gemv8m_f16_f16. */
const INFIX: Record<GemvKernelVariant, string> = { v1: '', roll: 'r', occ: 'o', dense: 'd', eight: 'e', mma: 'm' };

/** Weight rows a GEMV block reads (GEMV_WROWS in cuda/gemv.cu); eight's read twice as many, mma's 16 (gemvBlockRows). */
export const GEMV_WROWS = 4;
/** The weight rows a block of GEMV entry `kernel` reads: the grid of a launch is its rows over these (gemvBlocks). */
export const gemvBlockRows = (kernel: string): number => (/^gemv\dm_/.test(kernel) ? 4 * GEMV_WROWS : /^gemv\de_/.test(kernel) ? 2 * GEMV_WROWS : GEMV_WROWS);
/** The blocks of a GEMV launch over segments of `n` output rows each (gated: gate and up rows of n[0] outputs, half a block's rows each). */
export const gemvBlocks = (n: readonly number[], gated: boolean, blockRows: number): number =>
  gated ? Math.ceil(n[0] / (blockRows / 2)) : n.reduce((sum, rows) => sum + Math.ceil(rows / blockRows), 0);

const variant = new EnvChoice(GEMV_VARIANTS, 'auto', 'ZINFER_GEMV');
/** The variant named by an environment value (unset or empty: auto). */
export const parseGemvVariant = (value: string | undefined, field?: string): GemvVariant => variant.parse(value, field);
export const gemvVariant = (): GemvVariant => variant.get();
/** Selects the variant later launches use (the bench's A/B; tests). */
export const setGemvVariant = (v: GemvVariant): void => variant.set(v);

/** The most rows (of the compiled 1, 2, 4, 8) each variant has entries for: roll and occ 1–2, dense and eight 1–8; mma one entry for 1–8 (gemv8m). */
const VARIANT_MAX_ROWS: Record<GemvKernelVariant, number> = { v1: 8, roll: 2, occ: 2, dense: 8, eight: 8, mma: 8 };

/**
 * The entry point of the GEMV for `rowsVariant` rows (1, 2, 4 or 8) in the given dtypes. The variants are
 * compiled in the 16-bit modes (weights in the activation dtype) for the rows of VARIANT_MAX_ROWS; everything
 * else is v1.
 */
export function gemvKernel(rowsVariant: number, weight: string, act: string, v: GemvKernelVariant): string {
  const has = rowsVariant <= VARIANT_MAX_ROWS[v] && act !== 'f32' && weight === act;
  return `gemv${has && v === 'mma' ? 8 : rowsVariant}${has ? INFIX[v] : ''}_${weight}_${act}`;
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
    const parts = item.split(':');
    const bad = (why: string) => new BackendError(`${field}: '${item}' ${why} (epilogue:variant, e.g. residual:occ)`, { field, expected: `${EPILOGUES.join(' | ')} : ${GEMV_VARIANTS.join(' | ')}`, found: item });
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw bad('is not one epilogue and one variant');
    const [e, v] = parts;
    if (!(EPILOGUES as readonly string[]).includes(e)) throw bad(`names no epilogue`);
    if (out[e as GemvEpilogue]) throw bad('repeats an epilogue');
    out[e as GemvEpilogue] = variant.parse(v, field);
  }
  return out;
}
let byEpilogue = parseGemvByEpilogue(process.env.ZINFER_GEMV_BY_EPILOGUE);
export const gemvVariantByEpilogue = (): Partial<Record<GemvEpilogue, GemvVariant>> => ({ ...byEpilogue });
export const setGemvVariantByEpilogue = (map: Partial<Record<GemvEpilogue, GemvVariant>>): void => {
  byEpilogue = parseGemvByEpilogue(Object.entries(map).map(([e, v]) => `${e}:${v}`).join(','), 'setGemvVariantByEpilogue');
};

/** Blocks an SM holds of the dense, occ and eight entries (128 registers a thread). */
export const GEMV_BLOCKS_PER_SM_AT_128 = 4;

/**
 * The auto rule, fitted on an NVIDIA H200 (graphed batch-1 decode of Llama shapes from 7B to a 70B tp-4 rank,
 * every assignment of the variants to the three kinds of GEMV: bench/results/gemv-mix-h200.json, then
 * shape-profile-gemv-dense-h200-s18.json, and the GEMV chain of gemv-chain-rows-h200-s19.json):
 *   - residual GEMVs (o, down) whose 4-row blocks (grid.blocks) take more than one wave of 4 an SM, and whose
 *     8-row blocks fit in one, take eight: the 7B's o and down are one wave of 512 blocks instead of 1.9;
 *   - rows of exactly one round, `perThread` (the 16-byte vectors of a weight row each of the 128 threads loads)
 *     being its 4 slots (4,096 wide at 16 bits; 3,456 on a 13B tp-4 rank's down), take dense: a block's whole
 *     32 KB in flight at once, 4 blocks an SM;
 *   - q|k|v and gate|up of 5–7 vectors a thread (5,120 wide: the 13B and its tp ranks) take eight: 16 loads a
 *     thread in flight where occ keeps 8 (the 13B tp-4 rank's layer chain 51.2 / 52.5 → 48.3 / 49.7 µs with
 *     gate|up on eight, 49.7 / 51.0 with q|k|v on it; gemv-chain-13b-tp4-h200-s19.json);
 *   - other residual GEMVs (o, down: a few thousand outputs, 1–3 waves of blocks) take occ, whose 4 blocks an
 *     SM cut the waves;
 *   - v1 for gated GEMVs of 8 or more (8,192-wide rows), else occ (5,120-wide rows: a second round of 1 vector
 *     is a latency trip with little in flight).
 * Small batches (`rows` 2–8) take mma, the tensor cores: 81–94% of the read rate on the 7B's GEMVs alone at any
 * of 2–8 rows, where the FMA entries' best read 40–48% at 8 rows (bench/results/gemv-mma-h200-s20.json). Where
 * it does not fit (a LayerNorm fused, rows not a multiple of 8 wide): eight, whose 8 weight rows a block use each
 * x vector twice as often as 4 do; but the residual GEMVs (o, down: 4,096 outputs, few blocks) take occ at 2
 * rows and dense at 3–4, where more blocks an SM count for more. Fitted on the 7B layer's GEMVs alone
 * (microbench, H200, cuda-check-h200-s20-rows.json) and checked on graphed steps (shape-profile-rows*-h200-s20.json):
 * v1 there (165–254 registers, 2–3 blocks an SM) was 15–55% slower.
 */
export function autoGemvVariant(epilogue: GemvEpilogue, perThread: number, grid?: { blocks: number; multiprocessors: number }, rows = 1, mmaFits = true): GemvKernelVariant {
  if (rows > 1) {
    if (mmaFits) return 'mma';
    if (epilogue === 'residual') return rows <= 2 ? 'occ' : rows <= 4 ? 'dense' : 'eight';
    return 'eight';
  }
  if (epilogue === 'residual' && grid) {
    const wave = GEMV_BLOCKS_PER_SM_AT_128 * grid.multiprocessors;
    if (grid.blocks > wave && Math.ceil(grid.blocks / 2) <= wave) return 'eight';
  }
  if (perThread === 4) return 'dense';
  if (epilogue === 'residual') return 'occ';
  if (perThread >= 5 && perThread <= 7) return 'eight';
  return epilogue === 'gated' && perThread >= 8 ? 'v1' : 'occ';
}

/**
 * Narrow rows take the one-warp GEMV (gemv1w_*, gemv2w_*: cuda/gemv.cu) in the 16-bit modes at 1–2 rows under
 * 'warp' (the default), the 128-thread one under 'block' (ZINFER_GEMV_NARROW, or setGemvNarrow between steps,
 * then resetGraphs). Narrow means inputs of at most GEMV_WARP_ALWAYS_IN (GPT-2's 768, its LM head included),
 * or of at most gemvWarpMaxIn() when the launch's blocks fit in one wave of one-warp blocks (an SM holds
 * GEMV_WARP_BLOCKS_PER_SM: registers). One wave of warps, each with its whole row's loads in flight, beats the
 * 128-thread GEMV's 2–3 waves on a tp rank's o projection. Graphed batch-1 steps on an H200, bounds
 * alternated on one program (bench/results/shape-profile-warp-bound-h200-s14.json), 1,024 / 2,560 / 4,096:
 * 13B tp-4 rank 3.162–3.177 / 3.108–3.112 / 3.101–3.109 ms (o: 1,280 inputs, 1,280 blocks); tp-2 rank
 * 4.815–4.827 / 4.775–4.781 / 4.765–4.809 (o: 2,560); 7B 4.209–4.238 / 4.217–4.226 / 4.273–4.315 (its o,
 * 4,096 inputs, loses); 13B and the 70B tp-4 rank (o: 2,048 blocks, over one wave) unchanged. Without the
 * one-wave test (shape-profile-warp-plain-h200-s14.json) a bound of 2,048 cost the 70B tp-4 rank 0.15 ms.
 * ZINFER_GEMV_WARP_MAX_IN or setGemvWarpMaxIn moves the bound (the bench's A/B; GEMV_WARP_ALWAYS_IN: off).
 */
export const GEMV_WARP_ALWAYS_IN = 1024;
export const GEMV_WARP_MAX_IN = 2560;
export const GEMV_WARP_BLOCKS_PER_SM = 14;
let warpMaxIn = parseWarpMaxIn(process.env.ZINFER_GEMV_WARP_MAX_IN, 'ZINFER_GEMV_WARP_MAX_IN');
export const gemvWarpMaxIn = (): number => warpMaxIn;
export const setGemvWarpMaxIn = (n: number): void => {
  warpMaxIn = parseWarpMaxIn(String(n), 'setGemvWarpMaxIn');
};
function parseWarpMaxIn(value: string | undefined, field: string): number {
  if (value === undefined || value === '') return GEMV_WARP_MAX_IN;
  const n = Number(value);
  if (!(Number.isInteger(n) && n >= 0)) throw new BackendError(`${field} is '${value}'; it takes a whole number of inputs ≥ 0`, { field, expected: 'an integer ≥ 0', found: value });
  return n;
}
export const GEMV_NARROW_MODES = ['warp', 'block'] as const;
export type GemvNarrowMode = (typeof GEMV_NARROW_MODES)[number];

const narrow = new EnvChoice(GEMV_NARROW_MODES, 'warp', 'ZINFER_GEMV_NARROW');
export const parseGemvNarrow = (value: string | undefined, field?: string): GemvNarrowMode => narrow.parse(value, field);
export const gemvNarrow = (): GemvNarrowMode => narrow.get();
export const setGemvNarrow = (mode: GemvNarrowMode): void => narrow.set(mode);

/** Whether a GEMV of `inF` inputs launching `grid.blocks` blocks takes the one-warp form (see GEMV_WARP_MAX_IN). */
export function gemvNarrowRows(inF: number, grid?: { blocks: number; multiprocessors: number }): boolean {
  // The one-wave test uses GEMV_WARP_BLOCKS_PER_SM, fitted for the 144-register one-warp entry (nvcc 13).
  if (inF <= GEMV_WARP_ALWAYS_IN) return true;
  return grid !== undefined && inF <= warpMaxIn && grid.blocks <= GEMV_WARP_BLOCKS_PER_SM * grid.multiprocessors;
}

/**
 * The GEMV entry point and block size for a launch of `rows` rows over `inF` inputs with `epilogue`; `grid`
 * (its blocks of GEMV_WROWS rows and the GPU's SMs) lets rows wider than GEMV_WARP_ALWAYS_IN take the one-warp
 * GEMV, and auto take eight. A launch with a LayerNorm fused (`layerNorm`) never takes eight or mma, which have
 * no LayerNorm instance (eight's spilled): dense instead, with eight's sums; nor does a row not a multiple of 8
 * wide take mma. The launch's grid: gemvBlocks over gemvBlockRows(kernel).
 */
export function gemvLaunch(rows: number, weight: string, act: string, inF: number, epilogue: GemvEpilogue = 'none', grid?: { blocks: number; multiprocessors: number }, layerNorm = false): { kernel: string; threads: number } {
  const rv = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
  if (narrow.get() === 'warp' && rv <= 2 && gemvNarrowRows(inF, grid) && act !== 'f32' && weight === act) return { kernel: `gemv${rv}w_${weight}_${act}`, threads: 32 };
  const v = byEpilogue[epilogue] ?? variant.get();
  const perThread = Math.ceil(inF / 8 / 128); // 16-byte vectors (8 elements at 16 bits) of a row per thread
  const mmaFits = !layerNorm && inF % 8 === 0; // mma has no LayerNorm instance and loads whole 16-byte vectors
  const picked = v === 'auto' ? autoGemvVariant(epilogue, perThread, grid, rv, mmaFits) : v;
  const launched = (picked === 'eight' && layerNorm) || (picked === 'mma' && !mmaFits) ? 'dense' : picked;
  return { kernel: gemvKernel(rv, weight, act, launched), threads: 128 };
}
