// How a MoE step of more than 64 rows (a prompt, or a decode batch past the graphs') runs its experts
// (ZINFER_MOE_PREFILL, moePrefill.set):
//   grouped: each local expert's GEMMs over only its routed rows, after the host reads the routing
//            (moe-grouped-gemm.ts: one wait a layer, so never in a captured step);
//   dense:   every local expert over every row in passes (moe-dense.ts): experts ÷ top-k times the routed work;
//   tiles:   each expert's rows in tiles of 8 on CUDA-core kernels, its weights read once a tile (moe-launch.ts);
//   auto:    grouped from MOE_GROUPED_MIN_ROWS rows where the step is not captured, else dense while the local
//            experts are at most MOE_DENSE_WASTE × top-k (Mixtral's 8 of top-2), else tiles.
// Steps of 9–64 rows always run dense. A Mixtral-8x7B layer on an H200 (bf16, bench/results/moe-prefill-h200-s22.json):
// 1,024 rows on tiles 62 ms, dense 5.5.
import { EnvChoice } from './env-choice.js';
import { MOE_DENSE_MAX_ROWS, MOE_DENSE_WASTE } from './moe-dense.js';
import { MOE_GROUPED_MIN_ROWS } from './moe-grouped-gemm.js';

export const MOE_PREFILL_MODES = ['auto', 'grouped', 'dense', 'tiles'] as const;
export type MoePrefillMode = (typeof MOE_PREFILL_MODES)[number];
export const moePrefill = new EnvChoice<MoePrefillMode>(MOE_PREFILL_MODES, 'auto', 'ZINFER_MOE_PREFILL');

/** The path of a step of `rows` (> 8) rows over `nLocal` local experts of top-`topK` routing. */
export function moeStepPath(rows: number, nLocal: number, topK: number, capturing: boolean): 'grouped' | 'dense' | 'tiles' {
  if (rows <= MOE_DENSE_MAX_ROWS) return 'dense';
  const mode = moePrefill.get();
  if (!capturing && (mode === 'grouped' || (mode === 'auto' && rows >= MOE_GROUPED_MIN_ROWS))) return 'grouped';
  if (mode === 'dense' || (mode !== 'tiles' && nLocal <= MOE_DENSE_WASTE * topK)) return 'dense';
  return 'tiles';
}
