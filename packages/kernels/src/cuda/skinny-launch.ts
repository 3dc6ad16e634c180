// Linear groups of 9–64 rows (batch decode) as one tensor-core launch (cuda/skinny.cu): the GEMV's fusion
// (q|k|v segments, RMSNorm before, residual / activation / gated activation after) where cuBLAS would take
// a launch per linear plus the norm and the activation, and at 64 rows reads a 4096² weight at 44% of the
// card's read rate. Needs sm_90 (clusters split the columns), weights in the 16-bit activation dtype and
// inputs a multiple of 64 wide; LayerNorm groups and everything else take cuBLAS.
import type { LinearGroup } from './exec-plan.js';
import { EnvChoice } from './env-choice.js';
import { groupArgs, NORM } from './group-args.js';
import type { StepContext } from './step-context.js';

export const SKINNY_MAX_ROWS = 64;
/** Weight rows a block takes (SKINNY_TILE in cuda/skinny.cu), its columns per chunk, its threads. */
const TILE = 64;
const CHUNK = 64;
const THREADS = 128;

/** ZINFER_SKINNY=off sends 9–64-row groups to cuBLAS again (the bench's A/B). */
export const SKINNY_MODES = ['on', 'off'] as const;
export type SkinnyMode = (typeof SKINNY_MODES)[number];
const mode = new EnvChoice(SKINNY_MODES, 'on', 'ZINFER_SKINNY');
export const skinnyMode = (): SkinnyMode => mode.get();
export const setSkinnyMode = (m: SkinnyMode): void => mode.set(m);

/** Whether a group of `rows` rows (more than a GEMV takes: linear-launch.ts asks) runs as a skinny GEMM. */
export function skinnyFits(ctx: StepContext, g: LinearGroup, rows: number): boolean {
  if (mode.get() === 'off' || rows > SKINNY_MAX_ROWS) return false;
  if (ctx.gpu.arch < 90 || (ctx.act !== 'f16' && ctx.act !== 'bf16')) return false;
  if (g.norm !== null && g.norm.op !== 'rmsNorm') return false;
  const x = g.norm ? g.norm.inputs.x : g.input;
  if (ctx.isF32(x) || (g.epilogue.kind === 'residual' && ctx.isF32(g.epilogue.residual))) return false;
  return g.members.every((m) => {
    const w = ctx.weight(m.attrs.weight);
    return w.dtype === ctx.act && w.shape[1] % CHUNK === 0;
  });
}

/** Tiles of x rows (8 each) the entry point covers: 2, 4 or 8. */
export const skinnyTiles = (rows: number): number => (rows <= 16 ? 2 : rows <= 32 ? 4 : 8);

/**
 * Blocks a tile's columns are split over (a cluster, 1–8): enough blocks for about 1.5 waves at the
 * entry point's blocks an SM, each with at least 4 chunks.
 */
export function skinnySplits(tiles: number, chunks: number, tilesOfX: number, multiprocessors: number): number {
  const room = 1.5 * multiprocessors * (tilesOfX === 8 ? 3 : 4);
  let s = 1;
  while (s < 8 && tiles * s * 2 <= room && chunks >= 4 * s * 2) s *= 2;
  return s;
}

export function launchSkinny(ctx: StepContext, g: LinearGroup, rows: number): void {
  const a = groupArgs(ctx, g);
  const T = skinnyTiles(rows);
  const tiles = g.epilogue.kind === 'gated' ? Math.ceil(a.segs[0][3] / (TILE / 2)) : a.segs.reduce((n, s) => n + Math.ceil(s[3] / TILE), 0);
  const splits = skinnySplits(tiles, a.inF / CHUNK, T, ctx.gpu.multiprocessors);
  const norm = a.norm === NORM.rms ? NORM.rms : NORM.none;
  ctx.gpu.launch(`skinny${T}_${ctx.act}`, { x: tiles * splits }, THREADS, [
    ...a.segs.flat(), a.x, a.res, a.normW, a.eps, rows, a.inF, a.epi, a.act, norm, a.yF32, splits,
  ], 0, splits);
}
