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
const TILE = 128;
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

/** Blocks of the skinny kernel an SM holds (about 240 registers a thread: 2 blocks of 128). */
const BLOCKS_PER_SM = 2;

/** A block's fixed cost (ramp, cluster barriers, epilogue) in chunks of work: about 8 (H200, session 9). */
const BLOCK_OVERHEAD_CHUNKS = 8;

/**
 * Blocks a tile's columns are split over (a cluster of 1–8, each block at least 4 chunks of 64 columns): the
 * least waves × (chunks a block + its fixed cost), the smaller S on a tie. `resident(S)`: the clusters of S
 * blocks the device holds at once (fewer than SMs × 2 ÷ S, since a cluster keeps to one GPC: an H200 holds
 * 32 clusters of 8, not 33; a 4096-row weight's 32 tiles × 8 then take one wave, 30 would take two).
 */
export function skinnySplits(tiles: number, chunks: number, resident: (splits: number) => number): number {
  let best = 1;
  let bestCost = Infinity;
  for (let s = 1; s <= 8 && chunks >= 4 * s; s++) {
    const cost = Math.ceil(tiles / Math.max(1, resident(s))) * (chunks / s + BLOCK_OVERHEAD_CHUNKS);
    if (cost < bestCost - 1e-9) [best, bestCost] = [s, cost];
  }
  return best;
}

/** Resident clusters per GPU, kernel and size, asked of the driver once (a model where it cannot say). */
const residentClusters = new WeakMap<object, Map<string, number>>();
function residentOf(ctx: StepContext, kernel: string): (splits: number) => number {
  const gpu = ctx.gpu;
  let known = residentClusters.get(gpu);
  if (!known) residentClusters.set(gpu, (known = new Map()));
  return (s) => {
    const key = `${kernel}/${s}`;
    let n = known.get(key);
    if (n === undefined) {
      const model = Math.floor((BLOCKS_PER_SM * gpu.multiprocessors) / s);
      n = (s > 1 ? gpu.maxActiveClusters?.(kernel, THREADS, s) : null) ?? model;
      known.set(key, n);
    }
    return n;
  };
}

export function launchSkinny(ctx: StepContext, g: LinearGroup, rows: number): void {
  const a = groupArgs(ctx, g);
  const tiles = g.epilogue.kind === 'gated' ? Math.ceil(a.segs[0][3] / (TILE / 2)) : a.segs.reduce((n, s) => n + Math.ceil(s[3] / TILE), 0);
  const kernel = `skinny${skinnyTiles(rows)}${a.norm === NORM.rms ? 'n' : ''}_${ctx.act}`;
  const splits = skinnySplits(tiles, a.inF / CHUNK, residentOf(ctx, kernel));
  ctx.gpu.launch(kernel, { x: tiles * splits }, THREADS, [...a.segs.flat(), a.x, a.res, a.normW, a.eps, rows, a.inF, a.epi, a.act, a.yF32, splits], 0, splits);
}
